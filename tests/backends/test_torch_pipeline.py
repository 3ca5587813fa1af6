"""The whole file API on the PyTorch backend (torch-cpu here, torch-cuda on a GPU) matches ONNX Runtime."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from masquerade.api import swap  # noqa: E402
from masquerade.config import RunConfig, RuntimeOptions, SelectOptions, SwapOptions  # noqa: E402
from masquerade.models import standins  # noqa: E402
from masquerade.models.store import ModelStore  # noqa: E402

PROVIDERS = ["torch-cpu", pytest.param("torch-cuda", marks=pytest.mark.gpu)]


@pytest.fixture()
def cache(tmp_path):
    root = tmp_path / "models"
    store = ModelStore(root)
    for name, model in (("inswapper_128", standins.swapper(mode="identity")),
                        ("w600k_r50", standins.arcface())):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(standins.to_bytes(model))
        store.import_file(path, name, allow_unknown_hash=True)
    return root


@pytest.mark.parametrize("provider", PROVIDERS)
def test_torch_backend_matches_onnx_runtime_end_to_end(provider, cache, tmp_path, examples_dir):
    if provider == "torch-cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    results = {}
    for name in ("cpu", provider):
        out = tmp_path / f"{name}.png"
        config = RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                           runtime=RuntimeOptions(execution_provider=name, models_dir=cache))
        assert swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", out, config).faces_swapped == 1
        results[name] = cv2.imread(str(out)).astype(int)
    diff = np.abs(results["cpu"] - results[provider])
    assert diff.max() <= 3 and diff.mean() < 0.05


def test_swap_then_enhance_on_the_device_crosses_the_bus_once_each_way(tmp_path, examples_dir, monkeypatch):
    from masquerade._backends import torch_swap
    from masquerade.config import EnhanceOptions

    root = tmp_path / "models"
    store = ModelStore(root)
    for name, model in (("inswapper_128", standins.swapper(mode="conv")), ("w600k_r50", standins.arcface()),
                        ("gfpgan_1.4", standins.image_model(mode="conv"))):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(standins.to_bytes(model))
        store.import_file(path, name, allow_unknown_hash=True)
    uploads = []
    upload = torch_swap.tw.frame_to_tensor
    monkeypatch.setattr(torch_swap.tw, "frame_to_tensor",
                        lambda *a, **k: uploads.append(1) or upload(*a, **k))
    results = {}
    for provider in ("cpu", "torch-cpu"):
        out = tmp_path / f"{provider}.png"
        config = RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                           enhance=EnhanceOptions(enhancer="gfpgan_1.4", blend=1.0),
                           runtime=RuntimeOptions(execution_provider=provider, models_dir=root,
                                                  precision="fp32" if provider != "cpu" else "auto"))
        assert swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", out, config).faces_swapped == 1
        results[provider] = cv2.imread(str(out)).astype(int)
    assert len(uploads) == 1  # swap and enhance share one upload (and one download)
    diff = np.abs(results["cpu"] - results["torch-cpu"])
    assert diff.max() <= 4 and diff.mean() < 0.1


def test_torch_compile_runs_the_same_swap(cache, tmp_path, examples_dir):
    results = {}
    for compiled in (False, True):
        out = tmp_path / f"{compiled}.png"
        config = RunConfig(select=SelectOptions(mode="all"), swap=SwapOptions(swapper="inswapper_128"),
                           runtime=RuntimeOptions(execution_provider="torch-cpu", models_dir=cache,
                                                  torch_compile=compiled))
        assert swap([examples_dir / "biden.jpg"], examples_dir / "obama.jpg", out, config).faces_swapped == 1
        results[compiled] = cv2.imread(str(out)).astype(int)
    assert np.abs(results[True] - results[False]).max() <= 1
