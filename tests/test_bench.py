"""masquerade bench: clips, the roop-style paste, the stand-ins' contracts and the table's rows."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from masquerade._stages.detect_scrfd import ScrfdDetector
from masquerade.bench import BenchOptions, format_table, run_bench
from masquerade.bench import jobs as bench_jobs
from masquerade.bench.baseline import paste_full_frame
from masquerade.bench.clips import parse_size, write_clip
from masquerade.errors import UsageError
from masquerade.geometry.align import crop_affine, crop_footprint
from masquerade.media.reader import VideoReader
from masquerade.models import standins
from masquerade.models.manifest import ARCFACE_128, get_spec
from masquerade.models.standins_arch import iresnet50_arch, scrfd10g_arch


@pytest.fixture(scope="module")
def small_models(tmp_path_factory):
    """Tiny graphs with the real contracts (the architecture stand-ins take seconds per face)."""
    folder = tmp_path_factory.mktemp("models")
    empty = standins.scrfd_encode(np.zeros((0, 4)), np.zeros((0, 5, 2)), [])
    graphs = {"det_10g": standins.scrfd(empty), "w600k_r50": standins.arcface(),
              "inswapper_128": standins.swapper(128, "conv")}
    files = []
    for name, graph in graphs.items():
        path = folder / f"{name}.onnx"
        path.write_bytes(standins.to_bytes(graph))
        files.append((name, path))
    return tuple(files)


def test_parse_size():
    assert parse_size("720p") == (1280, 720)
    assert parse_size("320x180") == (320, 180)
    for bad in ("big", "321x180", "10x10"):
        with pytest.raises(UsageError):
            parse_size(bad)


def test_write_clip_four_faces(tmp_path):
    clip = write_clip(tmp_path / "c.mp4", 3, (320, 180), faces=4)
    with VideoReader(clip) as reader:
        frames = [ctx.image for ctx in reader.frames()]
    assert len(frames) == 3 and frames[0].shape == (180, 320, 3)
    # Four cells, each its own camera: the quadrants differ (different phases).
    q = [frames[0][:90, :160], frames[0][:90, 160:], frames[0][90:, :160], frames[0][90:, 160:]]
    assert all(np.abs(q[0].astype(int) - other).mean() > 2 for other in q[1:])


def test_paste_full_frame_changes_only_the_face(obama):
    kps = np.array([[310, 330], [420, 330], [365, 395], [320, 450], [410, 450]], np.float32)
    affine = crop_affine(kps, ARCFACE_128, 128)
    out = paste_full_frame(obama, np.zeros((128, 128, 3), np.float32), affine)
    diff = np.abs(out.astype(int) - obama).max(axis=2)
    x1, y1, x2, y2 = crop_footprint(affine, 128, obama.shape)
    assert diff[y1:y2, x1:x2].max() > 100  # the black crop went in
    outside = diff.copy()
    outside[y1:y2, x1:x2] = 0
    assert outside.max() == 0  # nothing outside the crop's footprint
    centre = out[(y1 + y2) // 2, (x1 + x2) // 2]
    assert centre.max() <= 2  # full weight inside (eroded, blurred mask)


def test_scrfd_standin_contract():
    model, stats = scrfd10g_arch()
    assert 3.5e6 < stats.parameters < 4.5e6 and 12e9 < stats.macs < 14.5e9
    session = ort.InferenceSession(model.SerializeToString())
    detector = ScrfdDetector(session, get_spec("det_10g"))
    outs = session.run(None, {"input.1": np.zeros((1, 3, 640, 640), np.float32)})
    assert [o.shape for o in outs] == [(12800, 1), (3200, 1), (800, 1), (12800, 4), (3200, 4), (800, 4),
                                       (12800, 10), (3200, 10), (800, 10)]
    assert detector.detect(np.full((360, 640, 3), 128, np.uint8)) == []  # -20 score bias: no faces


def test_iresnet50_standin_contract():
    model, stats = iresnet50_arch()
    assert abs(stats.parameters - 43.6e6) < 0.3e6
    session = ort.InferenceSession(model.SerializeToString())
    out = session.run(None, {"input.1": np.random.default_rng(0).random((2, 3, 112, 112), np.float32)})[0]
    assert out.shape == (2, 512) and np.isfinite(out).all()
    assert session.get_outputs()[0].name == "683"


def test_model_job_reports_pinned_batch(small_models):
    paths = dict(small_models)
    backend = bench_jobs.Backend(threads=1)
    swap = bench_jobs.model_job("inswapper_128", str(paths["inswapper_128"]), [1, 4], 2, backend)
    assert swap["medians"][1] > 0 and swap["medians"][4] is None  # graph pins batch 1, as the real file
    arc = bench_jobs.model_job("w600k_r50", str(paths["w600k_r50"]), [1, 4], 2, backend)
    assert arc["medians"][1] > 0 and arc["medians"][4] > 0 and arc["peak_rss_mib"] > 50


def test_run_bench_rows(small_models, tmp_path):
    options = BenchOptions(seconds=0.4, sizes=("360p",), faces=(1,), neural_frames=2, models=False,
                           model_files=small_models)
    lines = []
    report = run_bench(options, progress=lines.append)
    names = [(r.section, r.name) for r in report.rows]
    assert names == [("codec", "codec only (decode + encode)"),
                     ("embedded", "sequential baseline"), ("embedded", "masquerade engine"),
                     ("neural", "sequential baseline"), ("neural", "masquerade engine"),
                     ("neural", "masquerade engine, int8")]
    for row in report.rows:
        assert row.fps > 0 and row.peak_rss_mib > 50 and row.gpu_mib is None and row.cpu_ms_per_frame > 0
        assert row.ms_per_frame == pytest.approx(1000 / row.fps)
        assert row.frames == (10 if row.section in ("codec", "embedded") else 2)
        if row.section != "codec":
            assert row.faces_per_s == pytest.approx(row.fps * row.faces, rel=1e-6)  # one face, every frame
    assert "given" in report.rows[-1].note and lines
    int8_notes = [n for n in report.notes if n.startswith("inswapper_128 int8: ")]
    assert len(int8_notes) == 1 and "dB PSNR from fp32" in int8_notes[0] and "random" not in int8_notes[0]
    table = format_table(report)
    assert table.startswith("machine: ") and table.count("\n") >= len(report.rows)
    assert "sequential baseline" in table and " - " in table  # GPU column without CUDA


def test_cli_parses_and_rejects_bad_model_flag():
    from masquerade.cli import bench_cmd

    parser = argparse.ArgumentParser()
    bench_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["bench", "--sizes", "720p", "--faces", "1", "--model", "det_10g"])
    assert args.func is bench_cmd.run and args.neural_frames == 4
    with pytest.raises(UsageError):
        bench_cmd.run(args)
    args = parser.parse_args(["bench", "--precision", "fp16"])
    with pytest.raises(UsageError, match="torch providers"):
        bench_cmd.run(args)


def test_four_face_clip_is_detected(tmp_path):
    """The 4-face clip's faces are real enough for the embedded detector."""
    from masquerade._stages.detect import MeshAnalyser

    clip = write_clip(tmp_path / "c.mp4", 1, (1280, 720), faces=4)
    with VideoReader(clip) as reader:
        image = next(iter(reader.frames())).image
    assert len(MeshAnalyser().detect(cv2.resize(image, (1280, 720)))) == 4


def test_a_torch_provider_without_torch_fails_before_any_work():
    try:
        import torch  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("torch is installed here")
    from masquerade.cli import bench_cmd
    from masquerade.errors import ProviderUnavailable

    parser = argparse.ArgumentParser()
    bench_cmd.register(parser.add_subparsers())
    with pytest.raises(ProviderUnavailable, match="needs PyTorch"):
        bench_cmd.run(parser.parse_args(["bench", "--execution-provider", "torch-cuda"]))


def test_model_rows_label_int8_files_and_run_them_on_onnx_runtime(small_models):
    from masquerade.bench import BenchReport, _model_rows

    paths = dict(small_models)
    cpu = bench_jobs.Backend(threads=1)
    models = [("inswapper_128", "inswapper_128", str(paths["inswapper_128"]), cpu),
              ("inswapper_128 int8", "inswapper_128", str(paths["inswapper_128"]), cpu)]
    report = BenchReport()
    _model_rows(BenchOptions(model_runs=1), models, {"inswapper_128": False}, [], report, lambda _: None)
    names = [r.name for r in report.rows]
    assert names == ["inswapper_128 alone, batch 1", "inswapper_128 alone, batch 4",
                     "inswapper_128 int8 alone, batch 1", "inswapper_128 int8 alone, batch 4"]
    assert report.rows[0].faces_per_s > 0 and "pins another batch" in report.rows[3].note


def test_bench_needs_no_checkout():
    """The photo the benchmark films ships inside the package (package-data assets/**), so
    `masquerade bench` works from a pip install; no bench module reaches outside the package."""
    from importlib import resources
    from pathlib import Path

    from masquerade.bench.clips import examples_photo

    package = Path(str(resources.files("masquerade")))
    photo = examples_photo()
    assert photo.is_file() and package in photo.parents
    for module in (package / "bench").glob("*.py"):
        assert "parents[" not in module.read_text(), module
