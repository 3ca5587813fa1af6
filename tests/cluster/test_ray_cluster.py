"""Runs on a real local Ray cluster (a head started here, bound to 127.0.0.1, 2 CPUs), no mocks.

The outputs are compared with the single-machine run of the same clip (lossless, so any difference
is the pipeline's): same frames, timestamps, audio and duration, no jump at the joins. A worker
process killed mid-run is replaced and the run completes; a driver killed mid-run leaves its finished
segments, and the run started again does only the missing ones.
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
from segment_clips import CLIP_FRAMES, GOP, LOSSLESS_ALL, Run, clip_psnr, decoded, duration, packets, psnr

from masquerade.api import swap as swap_one
from masquerade.cluster import ClusterHooks, ClusterOptions, WorkerInfo, swap
from masquerade.config import EncodeOptions, RunConfig
from masquerade.media.image import read_image
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


def _check_same_as_single(output: Path, single: Run, pipeline) -> None:
    """Frames, pts, audio packets, duration; PSNR; the face at each join where the single run has it."""
    (pts_a, a), (pts_b, b) = decoded(single.output), decoded(output)
    assert pts_b == pts_a and len(b) == CLIP_FRAMES
    assert packets(output, "audio") == packets(single.output, "audio")
    assert duration(output) == duration(single.output)
    frame_psnr = [psnr(x, y) for x, y in zip(a, b, strict=True)]
    assert clip_psnr(a, b) >= 40 and min(frame_psnr) >= 35, (clip_psnr(a, b), min(frame_psnr))
    for join in (GOP, 2 * GOP):
        for index in (join - 1, join):
            here = pipeline.stages.analyser.detect(b[index])[0].kps5.mean(axis=0)
            there = pipeline.stages.analyser.detect(a[index])[0].kps5.mean(axis=0)
            assert np.linalg.norm(here - there) < 0.5, (index, here, there)


def test_a_batch_on_the_cluster_gives_the_single_machine_outputs(
        head, gop_clip, examples_dir, tmp_path, single_run, lossless_pipeline):
    source, photo = examples_dir / "astronaut.png", examples_dir / "obama.jpg"
    outputs = [tmp_path / "video.mp4", tmp_path / "photo.jpg"]
    hooks = Recorder()
    summary = swap([source], [gop_clip, photo], outputs, LOSSLESS_ALL, _options(tmp_path), hooks)
    assert not summary.failures
    assert (summary.segments, summary.computed, summary.reused, summary.workers) == (SEGMENTS, SEGMENTS, 0, 2)
    assert [f.output for f in summary.files] == outputs and summary.frames == CLIP_FRAMES + 1
    assert hooks.started == (2, CLIP_FRAMES + 1, 0) and sum(hooks.progress) == CLIP_FRAMES + 1
    assert len({w.pid for w in hooks.workers}) == 2 and all(w.pid != os.getpid() for w in hooks.workers)
    _check_same_as_single(outputs[0], single_run, lossless_pipeline)
    result = verify_file(outputs[0])
    assert result.labelled and result.watermark.found
    # The picture: what one machine writes, labelled there, bit for bit in its pixels.
    alone = tmp_path / "alone.jpg"
    still_config = replace(LOSSLESS_ALL, encode=EncodeOptions())  # a video option on a picture is an error
    swap_one([source], photo, alone, still_config, pipeline=lossless_pipeline)
    assert np.array_equal(read_image(outputs[1]).image, read_image(alone).image)
    assert verify_file(outputs[1]).labelled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alone.jpg", "photo.jpg", "store", "video.mp4"]
    assert list((tmp_path / "store").iterdir()) == []  # the finished segments went with the output


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
    summary = swap([examples_dir / "astronaut.png"], [gop_clip], [output], config, _options(tmp_path), hooks)
    assert hooks.killed and not summary.failures
    for pid in hooks.killed:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert summary.computed == SEGMENTS and summary.faces_swapped == CLIP_FRAMES
    _check_same_as_single(output, single_run, lossless_pipeline)


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
        swap([source], [gop_clip], [output], LOSSLESS_ALL, _options(tmp_path), StopWhenAllIn(kept))
    assert len(finished()) == SEGMENTS and not output.exists()
    summary = swap([source], [gop_clip], [output], LOSSLESS_ALL, _options(tmp_path))
    assert (summary.reused, summary.computed) == (SEGMENTS, 0)
    _check_same_as_single(output, single_run, lossless_pipeline)
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
