"""The neural path end to end through the file API, with stand-in model files in a private cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from masquerade.api import swap
from masquerade.config import EnhanceOptions, RunConfig, RuntimeOptions, SelectOptions, SwapOptions
from masquerade.errors import ModelNotCached
from masquerade.models import standins
from masquerade.models.store import ModelStore
from masquerade.stages.detect import MeshAnalyser


def _install(store: ModelStore, tmp: Path, name: str, model) -> None:
    path = tmp / f"{name}.onnx"
    path.write_bytes(standins.to_bytes(model))
    store.import_file(path, name, allow_unknown_hash=True)


@pytest.fixture()
def cache(tmp_path) -> Path:
    root = tmp_path / "models"
    store = ModelStore(root)
    _install(store, tmp_path, "inswapper_128", standins.swapper(mode="flat", colour_rgb=(0.0, 1.0, 0.0)))
    _install(store, tmp_path, "w600k_r50", standins.arcface())
    _install(store, tmp_path, "gfpgan_1.4", standins.image_model())
    return root


def _config(cache: Path, **swap) -> RunConfig:
    return RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128", **swap),
                     runtime=RuntimeOptions(models_dir=cache))


@pytest.mark.parametrize("mask", ["box", "mesh"])
def test_flat_colour_stand_in_lands_on_the_face_only(cache, tmp_path, examples_dir, obama, mask):
    out = tmp_path / "out.png"
    summary = swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", out, _config(cache, mask=mask))
    assert summary.faces_swapped == 1
    result = cv2.imread(str(out)).astype(int)
    face = MeshAnalyser().detect(obama)[0]
    cx, cy = (int(v) for v in face.kps5[2])  # nose tip: deep inside every mask
    b, g, r = result[cy, cx]
    assert g > 200 and b < 60 and r < 60
    x1, y1, x2, y2 = face.bbox.astype(int)
    pad = int(0.6 * (x2 - x1))
    outside = np.ones(obama.shape[:2], bool)
    outside[max(y1 - pad, 0):y2 + pad, max(x1 - pad, 0):x2 + pad] = False
    assert np.abs(result - obama.astype(int))[outside].max() <= 12  # only the watermark out there


def test_enhancer_runs_after_the_swapper(cache, tmp_path, examples_dir):
    out = tmp_path / "out.jpg"
    config = RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                       enhance=EnhanceOptions(enhancer="gfpgan_1.4", blend=1.0),
                       runtime=RuntimeOptions(models_dir=cache))
    summary = swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", out, config)
    assert summary.faces_swapped == 1 and out.exists()


def test_one_message_names_every_missing_file(tmp_path, examples_dir):
    config = RunConfig(swap=SwapOptions(swapper="inswapper_128"),
                       enhance=EnhanceOptions(enhancer="gfpgan_1.4"),
                       runtime=RuntimeOptions(models_dir=tmp_path / "empty"))
    with pytest.raises(ModelNotCached) as error:
        swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", tmp_path / "o.jpg", config)
    message = str(error.value)
    assert "\n" not in message  # one line
    for name in ("inswapper_128", "w600k_r50", "gfpgan_1.4"):
        assert name in message
    assert not (tmp_path / "o.jpg").exists()
