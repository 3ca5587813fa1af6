"""The neural path end to end through the file API, with stand-in model files in a private cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from masquerade._stages.build import check_runtime, torch_dtype
from masquerade._stages.detect import MeshAnalyser
from masquerade.api import RunHooks, swap
from masquerade.config import EnhanceOptions, RunConfig, RuntimeOptions, SelectOptions, SwapOptions
from masquerade.errors import ModelError, ModelNotCached, UsageError
from masquerade.models import standins
from masquerade.models.store import ModelStore


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


class _Notices(RunHooks):
    def __init__(self) -> None:
        self.messages: list[str] = []

    def on_notice(self, message: str) -> None:
        self.messages.append(message)


@pytest.fixture()
def conv_cache(tmp_path) -> Path:
    root = tmp_path / "conv-models"
    store = ModelStore(root)
    _install(store, tmp_path, "inswapper_128", standins.swapper(mode="conv"))
    _install(store, tmp_path, "w600k_r50", standins.arcface())
    _install(store, tmp_path, "gfpgan_1.4", standins.image_model(mode="conv"))
    return root


def _int8_config(cache: Path, enhancer: str = "none") -> RunConfig:
    return RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                     enhance=EnhanceOptions(enhancer=enhancer, blend=1.0 if enhancer != "none" else 0.8),
                     runtime=RuntimeOptions(models_dir=cache, precision="int8"))


def test_int8_run_is_made_once_gated_and_close_to_fp32(conv_cache, tmp_path, examples_dir):
    sources, target = [examples_dir / "biden.jpg"], examples_dir / "obama.jpg"
    first = _Notices()
    summary = swap(sources, target, tmp_path / "int8.png", _int8_config(conv_cache, "gfpgan_1.4"), first)
    assert summary.faces_swapped == 1
    assert [m.split(" for this CPU")[0] for m in first.messages if m.startswith("making")] == [
        "making an int8 inswapper_128", "making an int8 gfpgan_1.4"]
    figures = [m for m in first.messages if m.startswith("int8 ")]
    assert len(figures) == 2 and all("dB PSNR from fp32" in m and "held-out faces" in m for m in figures)
    assert len(list((conv_cache / "int8").glob("*.onnx"))) == 2

    again = _Notices()
    swap(sources, target, tmp_path / "int8-again.png", _int8_config(conv_cache, "gfpgan_1.4"), again)
    # cached: nothing made, nothing to announce but the stand-ins' unknown hashes (said on every run)
    assert again.messages and all("is unverified" in m for m in again.messages)
    fp32_config = RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                            enhance=EnhanceOptions(enhancer="gfpgan_1.4", blend=1.0),
                            runtime=RuntimeOptions(models_dir=conv_cache))
    swap(sources, target, tmp_path / "fp32.png", fp32_config)
    a, b = (cv2.imread(str(tmp_path / n)).astype(int) for n in ("int8.png", "fp32.png"))
    assert np.abs(a - b).mean() < 0.5 and np.abs(a - b).max() < 40


def test_sessions_are_built_from_hashed_bytes_and_unverified_models_say_so_every_run(
    cache, tmp_path, examples_dir, monkeypatch
):
    import onnxruntime as ort

    given: list[type] = []
    real = ort.InferenceSession.__init__

    def spy(self, model, *args, **kwargs):
        given.append(type(model))
        real(self, model, *args, **kwargs)

    monkeypatch.setattr(ort.InferenceSession, "__init__", spy)
    config = RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                       enhance=EnhanceOptions(enhancer="gfpgan_1.4"),
                       runtime=RuntimeOptions(models_dir=cache))
    source, target = [examples_dir / "biden.jpg"], examples_dir / "obama.jpg"
    for run in range(2):
        notices = _Notices()
        swap(source, target, tmp_path / f"o{run}.png", config, notices)
        unverified = sorted(m.split(":")[0] for m in notices.messages if "is unverified" in m)
        assert unverified == ["gfpgan_1.4", "inswapper_128", "w600k_r50"], notices.messages
    assert len(given) >= 6 and set(given) == {bytes}  # every model, the guard's too: never a path


def test_a_model_replaced_behind_a_forged_cache_entry_is_refused(cache, tmp_path, examples_dir):
    import json
    import os

    from masquerade.errors import ChecksumMismatch

    path = cache / "inswapper_128.onnx"
    stat = path.stat()
    path.write_bytes(standins.to_bytes(standins.swapper(mode="flat", colour_rgb=(1.0, 0.0, 0.0))))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    stamps = json.loads((cache / "verified.json").read_text())
    stamps[path.name].update(size=path.stat().st_size, mtime_ns=stat.st_mtime_ns)  # the old trust
    (cache / "verified.json").write_text(json.dumps(stamps))
    out = tmp_path / "o.png"
    with pytest.raises(ChecksumMismatch, match="inswapper_128"):
        swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", out, _config(cache))
    assert not out.exists()


def test_int8_of_a_model_without_convolutions_is_a_clear_error(cache, tmp_path, examples_dir):
    with pytest.raises(ModelError, match="no convolutions to quantise"):
        swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", tmp_path / "o.png",
             _int8_config(cache))
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize(("precision", "provider", "swapper", "message"), [
    ("fp16", "cpu", "inswapper_128", "needs --execution-provider torch-cuda or torch-cpu"),
    ("bf16", "cuda", "inswapper_128", "needs --execution-provider torch-cuda or torch-cpu"),
    ("int8", "torch-cpu", "inswapper_128", "is for the cpu execution provider"),
    ("int8", "cpu", "mesh", "quantises neural models"),
])
def test_precisions_a_run_cannot_honour_are_usage_errors(precision, provider, swapper, message):
    config = RunConfig(swap=SwapOptions(swapper=swapper),
                       runtime=RuntimeOptions(execution_provider=provider, precision=precision))
    with pytest.raises(UsageError, match=message):
        check_runtime(config)


@pytest.mark.parametrize(("runtime", "message"), [
    (RuntimeOptions(torch_compile=True), "--torch-compile needs --execution-provider torch"),
    (RuntimeOptions(frame_batch=0), "--frame-batch must be between 1 and 256"),
    (RuntimeOptions(frame_batch=1000), "--frame-batch must be between 1 and 256"),
    (RuntimeOptions(frame_workers=0), "--frame-workers must be between 1 and 32"),
])
def test_runtime_options_out_of_range_are_usage_errors(runtime, message):
    with pytest.raises(UsageError, match=message):
        check_runtime(RunConfig(runtime=runtime))


def test_torch_precision_defaults_to_fp16_on_cuda_only():
    assert torch_dtype("auto", "torch-cuda") == "fp16"
    assert torch_dtype("auto", "torch-cpu") == "auto"
    assert torch_dtype("bf16", "torch-cpu") == "bf16"
