"""``masquerade bench`` on the PyTorch backend (torch-cpu here; the same code measures torch-cuda)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

import numpy as np

from masquerade.bench import BenchOptions, run_bench
from masquerade.models import standins


def test_bench_runs_the_neural_rows_and_big_batches_on_torch(tmp_path):
    empty = standins.scrfd_encode(np.zeros((0, 4)), np.zeros((0, 5, 2)), [])
    files = []
    for name, graph in {"det_10g": standins.scrfd(empty), "w600k_r50": standins.arcface(),
                        "inswapper_128": standins.swapper(128, "conv")}.items():
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(standins.to_bytes(graph))
        files.append((name, path))
    options = BenchOptions(seconds=0.2, sizes=("360p",), faces=(1,), neural_frames=3, model_runs=1,
                           model_files=tuple(files), provider="torch-cpu", precision="fp32")
    report = run_bench(options)
    neural = [r for r in report.rows if r.section == "neural"]
    assert [r.name for r in neural] == ["sequential baseline", "masquerade engine"]  # no int8 off the cpu
    assert all(r.fps > 0 and r.frames == 3 for r in neural)
    swap_rows = [r for r in report.rows if r.name.startswith("inswapper_128 alone")]
    assert [r.faces for r in swap_rows] == [1, 8, 32, 64] and all(r.faces_per_s > 0 for r in swap_rows)
    assert all(r.gpu_mib is None for r in report.rows)  # no CUDA here
    assert "neural rows run on torch-cpu, precision fp32" in report.notes
