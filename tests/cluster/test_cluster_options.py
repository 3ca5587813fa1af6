"""The cluster's options, its segment store and the CLI without Ray (no cluster needed)."""

from __future__ import annotations

import sys
from dataclasses import replace

import pytest

from masquerade.cli.main import main
from masquerade.cluster import ClusterOptions, parse_cluster, validate_cluster
from masquerade.cluster.store import SegmentStore, settings_digest
from masquerade.config import EncodeOptions, MapEntry, RunConfig, RuntimeOptions, SelectOptions, SwapOptions
from masquerade.errors import UsageError
from masquerade.media.segments import Segment
from masquerade.split import SegmentResult


@pytest.mark.parametrize(("spec", "address"), [
    ("ray", None), ("ray:auto", "auto"), ("ray://head:10001", "ray://head:10001"),
    ("ray:10.0.0.5:6379", "10.0.0.5:6379"),
])
def test_cluster_addresses(spec, address):
    assert parse_cluster(spec) == address


@pytest.mark.parametrize("spec", ["spark", "ray:", "ray://", "Ray", ""])
def test_bad_cluster_addresses_are_one_line_errors(spec):
    with pytest.raises(UsageError, match="--cluster"):
        parse_cluster(spec)


@pytest.mark.parametrize(("bad", "option"), [
    ({"workers": 0}, "--cluster-workers"), ({"cpus_per_worker": 0}, "--cluster-cpus"),
    ({"segment_seconds": 0.0}, "--segment-seconds"), ({"warmup_seconds": -1.0}, "warmup_seconds"),
    ({"segment_seconds": float("nan")}, "--segment-seconds"), ({"workers": 1.5}, "--cluster-workers"),
])
def test_cluster_options_are_checked(bad, option):
    validate_cluster(ClusterOptions(workers=4, segment_seconds=2.0))
    with pytest.raises(UsageError, match=option):
        validate_cluster(ClusterOptions(**bad))


def test_without_ray_cluster_is_one_line_naming_the_extra(monkeypatch, capsys, examples_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra sees
    code = main(["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(examples_dir / "sample.mp4"),
                 "-o", str(tmp_path / "out.mp4"), "--cluster", "ray"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "pip install 'masquerade[cluster]'" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_the_store_key_follows_what_decides_the_pixels(examples_dir, tmp_path):
    sources = [examples_dir / "astronaut.png"]
    config = RunConfig()
    digest = settings_digest(config, sources, 4.0, 1.0)
    # Threads, workers and the model folder change speed, not pixels.
    faster = replace(config, runtime=RuntimeOptions(execution_threads=8, frame_workers=3,
                                                    models_dir=tmp_path))
    assert settings_digest(faster, sources, 4.0, 1.0) == digest
    mapped = SelectOptions(mapping=(MapEntry(examples_dir / "obama.jpg", (examples_dir / "biden.jpg",)),))
    for other in (replace(config, swap=SwapOptions(color_transfer=False)),
                  replace(config, encode=EncodeOptions(video_quality=20)), replace(config, select=mapped)):
        assert settings_digest(other, sources, 4.0, 1.0) != digest
    assert settings_digest(config, [examples_dir / "obama.jpg"], 4.0, 1.0) != digest
    assert settings_digest(config, sources, 2.0, 1.0) != digest
    assert settings_digest(config, sources, 4.0, 0.5) != digest

    store = SegmentStore(tmp_path / "store")
    clip = examples_dir / "sample.mp4"
    job = store.job(clip, digest, ".MP4")
    assert job.path == store.job(clip, digest, ".mp4").path != store.job(clip, digest, ".mkv").path
    segment = Segment(number=1, first=25, count=25, warmup=25, start_pts=0, output_pts=12800, end_pts=25600)
    assert not job.has(segment)
    result = SegmentResult(1, frames=25, faces_swapped=24, frames_changed=24, warmup_frames=25, seconds=1.5,
                           stage_seconds={"swap": 1.0})
    path = job.put(segment, b"segment bytes", result)
    assert job.has(segment) and path.read_bytes() == b"segment bytes" and job.result(segment) == result
    assert not job.has(replace(segment, count=24))  # another range is another segment
    assert sorted(p.suffix for p in job.path.iterdir()) == [".json", ".mp4"]  # nothing half-written
    job.remove()
    assert not job.path.exists()


def test_cluster_options_without_cluster_are_refused(capsys, examples_dir, tmp_path):
    code = main(["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(examples_dir / "biden.jpg"),
                 "-o", str(tmp_path / "out.jpg"), "--cluster-workers", "3", "--segment-seconds", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--cluster-workers, --segment-seconds only apply with --cluster" in err
    assert list(tmp_path.iterdir()) == []
