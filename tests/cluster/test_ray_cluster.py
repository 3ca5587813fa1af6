"""Runs on a real local Ray cluster (a head started here, bound to 127.0.0.1, 2 CPUs), no mocks.

The outputs are compared with the single-machine run of the same clip (lossless, so any difference
is the pipeline's): same frames, timestamps, audio and duration, no jump at the joins, the same
label. A batch of a video and an image goes through the command line; a ``--map`` run gives the
single machine's people; a worker process killed mid-run is replaced and the run completes; a driver
killed mid-run leaves its finished segments, and the run started again does only the missing ones.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from segment_clips import (
    CLIP_FRAMES,
    GOP,
    LOSSLESS_ALL,
    clip_psnr,
    decoded,
    duration,
    make_gop_clip,
    packets,
    psnr,
)

from masquerade.api import swap as swap_one
from masquerade.bench.people_clips import write_people_clip
from masquerade.cli.main import main
from masquerade.cluster import ClusterHooks, ClusterOptions, WorkerInfo, swap
from masquerade.config import EncodeOptions, MapEntry, RunConfig, SelectOptions
from masquerade.media.image import read_image
from masquerade.provenance.c2pa_label import read_label
from masquerade.verify import verify_file

ray = pytest.importorskip("ray")

SEGMENTS = 3  # the clip's 0.8 s groups of pictures


@dataclass(frozen=True)
class Head:
    address: str
    env: dict[str, str]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def head() -> Iterator[Head]:
    """``ray start --head`` in a subprocess (so a second driver can join it too), and this process
    connected to it as a driver. Token authentication with a token made for this cluster only."""
    # Ray's socket paths live under the temp dir and must stay short (107 bytes).
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    port = _free_port()
    (temp / "tmp").mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex,
           "RAY_USAGE_STATS_ENABLED": "0", "TMPDIR": str(temp / "tmp")}  # workers' scratch goes too
    log = open(temp / "head.log", "w+")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false",
         "--disable-usage-stats", f"--temp-dir={temp}"],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while "Ray runtime started" not in (temp / "head.log").read_text():
            assert process.poll() is None, (temp / "head.log").read_text()
            assert time.monotonic() < deadline, "the Ray head did not start in 180 s"
            time.sleep(0.2)
        address = f"127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as patch:
            for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN"):
                patch.setenv(key, env[key])
            # Ray read its settings when it was imported; Ray's own tests reload them like this.
            from ray._private.authentication_test_utils import reset_auth_token_state

            reset_auth_token_state()
            ray.init(address=address, logging_level="WARNING", log_to_driver=False)
            try:
                yield Head(address, env)
            finally:
                ray.shutdown()
        reset_auth_token_state()
    finally:
        process.terminate()  # `ray start --block` stops what it started
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


class Recorder(ClusterHooks):
    def __init__(self) -> None:
        self.workers: list[WorkerInfo] = []
        self.progress: list[int] = []
        self.started: tuple[int, int, int] | None = None

    def on_start(self, files: int, frames: int, done: int) -> None:
        self.started = (files, frames, done)

    def on_workers(self, workers) -> None:
        self.workers = list(workers)

    def on_progress(self, frames: int) -> None:
        self.progress.append(frames)


def _options(tmp_path: Path, workers: int = 2) -> ClusterOptions:
    return ClusterOptions(workers=workers, cpus_per_worker=1, segment_seconds=0.8, store=tmp_path / "store")


def _check_same_as_single(output: Path, single: Path, pipeline, frames: int = CLIP_FRAMES,
                          joins: tuple[int, ...] = (GOP, 2 * GOP)) -> None:
    """Frames, pts, audio packets, duration, label; PSNR; the face at each join."""
    (pts_a, a), (pts_b, b) = decoded(single), decoded(output)
    assert pts_b == pts_a and len(b) == frames
    assert packets(output, "audio") == packets(single, "audio")
    assert duration(output) == duration(single)
    assert read_label(output).claims == read_label(single).claims  # e.g. faces replaced in N of M frames
    frame_psnr = [psnr(x, y) for x, y in zip(a, b, strict=True)]
    assert clip_psnr(a, b) >= 40 and min(frame_psnr) >= 35, (clip_psnr(a, b), min(frame_psnr))
    for join in joins:
        for index in (join - 1, join):
            here = pipeline.detect_faces(b[index])[0].kps5.mean(axis=0)
            there = pipeline.detect_faces(a[index])[0].kps5.mean(axis=0)
            assert np.linalg.norm(here - there) < 0.5, (index, here, there)


def test_a_batch_on_the_cluster_gives_the_single_machine_outputs(
        head, gop_clip, examples_dir, tmp_path, single_run, lossless_pipeline, capsys):
    source, photo = examples_dir / "astronaut.png", examples_dir / "obama.jpg"
    folder, store = tmp_path / "out", tmp_path / "store"
    code = main(["swap", "-s", str(source), "-t", str(gop_clip), "-t", str(photo), "-o", str(folder),
                 "--faces", "all", "--video-quality", "0", "--cluster", f"ray:{head.address}",
                 "--cluster-workers", "2", "--cluster-cpus", "1", "--segment-seconds", "0.8",
                 "--cluster-store", str(store)])
    out, err = capsys.readouterr()
    assert code == 0, err
    video, still = folder / "clip_swapped.mp4", folder / "obama_swapped.jpg"
    assert f"ok: {gop_clip} -> {video}: {CLIP_FRAMES} frames, {CLIP_FRAMES} faces swapped" in out
    assert f"ok: {photo} -> {still}: 1 face swapped" in out
    assert f"2 of 2 files swapped into {folder}" in out and "cluster: 3 segments on 2 workers" in out
    assert "swapping 2 files on the cluster" in err and "Traceback" not in err  # one bar over the batch
    _check_same_as_single(video, single_run.output, lossless_pipeline)
    result = verify_file(video)
    assert result.labelled and result.watermark.found
    # The picture: what one machine writes (the batch's video options are for its videos only).
    alone = tmp_path / "alone.jpg"
    still_config = replace(LOSSLESS_ALL, encode=EncodeOptions())
    swap_one([source], photo, alone, still_config, pipeline=lossless_pipeline)
    assert np.array_equal(read_image(still).image, read_image(alone).image)
    assert read_label(still).claims == read_label(alone).claims
    assert sorted(p.name for p in folder.iterdir()) == ["clip_swapped.mp4", "obama_swapped.jpg"]
    assert list(store.iterdir()) == []  # the finished segments went with the output


def test_a_mapping_run_on_the_cluster_gives_the_single_machine_people(head, photos, examples_dir, tmp_path):
    """``--map obama.jpg=astronaut.png`` on two people side by side, then a cut to them in other places
    and photos: the identities are decided once (the reference's embedding, by one worker, for all)
    and per track in each segment after its warm-up, as one machine decides them."""
    people = write_people_clip("side_by_side", tmp_path, photos, (320, 180), seconds=0.5)
    clip = make_gop_clip(people.path, tmp_path / "mapped.mp4", seconds=2.0, size=(320, 180), gop=GOP)
    config = RunConfig(select=SelectOptions(mapping=(MapEntry(examples_dir / "obama.jpg",
                                                              (examples_dir / "astronaut.png",)),)),
                       encode=LOSSLESS_ALL.encode)
    single, output = tmp_path / "single.mp4", tmp_path / "cluster.mp4"
    alone = swap_one([], clip, single, config)
    summary = swap([], clip, output, config, _options(tmp_path))
    assert summary.segments == 3 and summary.results[0].ok
    assert summary.faces_swapped == alone.faces_swapped == len(people.truth)  # obama, in every frame
    _check_same_as_single(output, single, None, frames=len(people.truth), joins=())


class KillWorkers(Recorder):
    """Kills every worker process once the first segment is in: the others are mid-segment."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: list[int] = []

    def on_progress(self, frames: int) -> None:
        super().on_progress(frames)
        if not self.killed:
            for worker in self.workers:
                os.kill(worker.pid, signal.SIGKILL)
                self.killed.append(worker.pid)


def test_killed_workers_are_replaced_and_the_run_completes(
        head, gop_clip, examples_dir, tmp_path, single_run, lossless_pipeline):
    # --faces reference without a reference image: the person is decided once, by a worker, from the
    # video's first frames (the clip has one face, so the output is the single run's).
    config = RunConfig(encode=LOSSLESS_ALL.encode)
    hooks = KillWorkers()
    output = tmp_path / "video.mp4"
    summary = swap([examples_dir / "astronaut.png"], gop_clip, output, config, _options(tmp_path), hooks)
    assert hooks.killed and not summary.failed
    assert len({w.pid for w in hooks.workers}) == 2 and all(w.pid != os.getpid() for w in hooks.workers)
    assert hooks.started == (1, CLIP_FRAMES, 0) and sum(hooks.progress) == CLIP_FRAMES
    for pid in hooks.killed:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert summary.computed == SEGMENTS and summary.faces_swapped == CLIP_FRAMES
    _check_same_as_single(output, single_run.output, lossless_pipeline)


def test_a_killed_driver_leaves_its_segments_and_a_new_run_does_only_the_rest(
        head, gop_clip, examples_dir, tmp_path, single_run, lossless_pipeline):
    output, store = tmp_path / "video.mp4", tmp_path / "store"
    source = examples_dir / "astronaut.png"
    command = [sys.executable, "-m", "masquerade", "swap", "-s", str(source), "-t", str(gop_clip),
               "-o", str(output), "--faces", "all", "--video-quality", "0", "-q",
               "--cluster", f"ray:{head.address}", "--cluster-workers", "1", "--cluster-cpus", "1",
               "--segment-seconds", "0.8", "--cluster-store", str(store)]
    driver = subprocess.Popen(command, env={**head.env, "TMPDIR": str(tmp_path)},
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def finished() -> list[Path]:
        return sorted(p for p in store.glob("*/*.mp4") if not p.name.startswith("."))

    deadline = time.monotonic() + 240
    while not finished():
        assert driver.poll() is None, driver.communicate()[0].decode()
        assert time.monotonic() < deadline, "no segment finished in 240 s"
        time.sleep(0.1)
    driver.kill()
    driver.wait()
    kept = len(finished())
    assert 1 <= kept < SEGMENTS and not output.exists()

    # The run started again does only the rest; stopped (Ctrl-C) once every segment is in, it leaves
    # them all, and no output; a third run then only joins them.
    with pytest.raises(KeyboardInterrupt):
        swap([source], gop_clip, output, LOSSLESS_ALL, _options(tmp_path), StopWhenAllIn(kept))
    assert len(finished()) == SEGMENTS and not output.exists()
    summary = swap([source], gop_clip, output, LOSSLESS_ALL, _options(tmp_path))
    assert (summary.reused, summary.computed) == (SEGMENTS, 0)
    _check_same_as_single(output, single_run.output, lossless_pipeline)
    assert not finished()


class StopWhenAllIn(Recorder):
    """Checks that a run started again does only the missing segments, then stops it (as Ctrl-C
    would) once the last is in the store and before the join."""

    def __init__(self, kept: int) -> None:
        super().__init__()
        self.kept = kept

    def on_start(self, files: int, frames: int, done: int) -> None:
        super().on_start(files, frames, done)
        assert done == self.kept * GOP  # the kept segments' frames count as done

    def on_progress(self, frames: int) -> None:
        super().on_progress(frames)
        assert len(self.progress) <= SEGMENTS - self.kept  # only the missing segments are done
        if sum(self.progress) + self.kept * GOP == CLIP_FRAMES:
            raise KeyboardInterrupt
