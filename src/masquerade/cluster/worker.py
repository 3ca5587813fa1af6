"""The work one cluster worker does. Ray runs a ``SwapWorker`` as an actor: its process builds the
pipeline (loads the models) once, prepares the run's sources once (``api.Job``, from the photos the
driver shipped), then takes tasks until the run ends. Everything a task needs travels with it (the
segment's packets, the decided person), so a worker on another machine needs masquerade installed
and nothing else: no shared files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masquerade._version import __version__
from masquerade.api import Identities, Job, SourcePhotos
from masquerade.config import RunConfig
from masquerade.media.segments import Segment, SegmentPlan
from masquerade.pipeline import Pipeline, default_frame_workers
from masquerade.split import Person, SegmentResult, decide_person, swap_segment
from masquerade.types import Image

_FOLDER_PREFIX = "masquerade-worker-"
_FOLDER = re.compile(rf"^{_FOLDER_PREFIX}(?P<pid>\d+)-")


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs and what its models told the user."""

    pid: int
    host: str
    version: str
    notices: tuple[str, ...]
    """What the models told the user (licences...)."""


@dataclass(frozen=True)
class Chunk:
    """A segment's packets, as ``cut_segment`` wrote them (``suffix`` names their format)."""

    data: bytes
    suffix: str


Shipped = tuple[SourcePhotos, Identities | None]
"""What every task names: the run's photos, and the identities once they are decided."""


def worker_config(config: RunConfig, cpus: int) -> RunConfig:
    """The run's options with the threads a worker asked Ray for (unless the run set them)."""
    runtime = config.runtime
    return dataclasses.replace(config, runtime=dataclasses.replace(
        runtime,
        execution_threads=runtime.execution_threads or cpus,
        frame_workers=runtime.frame_workers or default_frame_workers(config, cpus),
    ))


class SwapWorker:
    """One worker process: a pipeline and a prepared job, built once; its methods are tasks.

    Every task names the run's photos (``shipped``): the first one prepares the job from them, the
    others reuse it. So a worker that Ray restarts after its process died prepares it again on its
    next task, from the same photos and identities.
    """

    def __init__(self, config: RunConfig, cpus: int) -> None:
        self.config = worker_config(config, cpus)
        self.cpus = cpus
        self._pipeline: Pipeline | None = None
        self._job: Job | None = None
        _remove_stale_folders()
        self._folder = Path(tempfile.mkdtemp(prefix=f"{_FOLDER_PREFIX}{os.getpid()}-"))

    def _unship(self, shipped: Any) -> Shipped:
        """The photos and identities from what a task was given (themselves here)."""
        return shipped

    def _ready(self, shipped: Any) -> Job:
        if self._job is None:
            photos, identities = self._unship(shipped)
            self._job = Job.from_photos(self.config, photos, pipeline=self._models(), identities=identities)
        return self._job

    def _models(self) -> Pipeline:
        if self._pipeline is None:
            import cv2

            cv2.setNumThreads(self.cpus)  # this process's own setting: it asked Ray for ``cpus`` CPUs
            self._pipeline = Pipeline(self.config)
        return self._pipeline

    def info(self) -> WorkerInfo:
        """Builds the pipeline (loads the models) and says where this worker runs."""
        pipeline = self._models()
        return WorkerInfo(os.getpid(), socket.gethostname(), __version__, pipeline.notices)

    def identities(self, shipped: Any) -> tuple[Identities, tuple[str, ...]]:
        """Prepares the sources (the guard checks every photo) and decides whom the run's faces are
        matched against, for every worker; with the warnings about the source photos."""
        job = self._ready(shipped)
        return job.identities, job.warnings

    def frame_reference(self, shipped: Any, image: Image, where: str) -> Person:
        """The person of ``--reference-frame``, from that frame's picture (``Job.frame_reference``)."""
        return Person(self._ready(shipped).frame_reference(image, where))

    def decide_person(self, shipped: Any, chunk: Chunk, plan: SegmentPlan, span: Segment) -> Person | None:
        """``split.decide_person`` on the frames of ``span`` (from the video's first frame)."""
        from masquerade.api import fps_of
        from masquerade.media.reader import VideoReader

        job = self._ready(shipped)
        with self._unpacked(chunk) as path:
            limit = job.pipeline.config.limits.max_video_pixels
            with VideoReader(path, max_pixels=limit, window=plan.window(span)) as reader:
                return decide_person(job, reader.frames(), fps_of(reader))

    def swap_segment(self, shipped: Any, person: Person, chunk: Chunk, plan: SegmentPlan, segment: Segment,
                     suffix: str) -> tuple[SegmentResult, bytes]:
        """One segment, encoded in the output's format (``suffix``); returns its run and its bytes."""
        job = self._ready(shipped)
        with self._unpacked(chunk) as path:
            output = path.with_name(f"swapped{suffix}")
            try:
                result = swap_segment(job, person, path, plan, segment, output)
                return result, output.read_bytes()
            finally:
                output.unlink(missing_ok=True)

    def swap_image(self, shipped: Any, person: Person, image: Image, grey: bool) -> tuple[np.ndarray, int]:
        """One target picture; returns the watermarked result and the faces changed."""
        return self._ready(shipped).swap_still(image, grey, person.reference)

    def close(self) -> None:
        """Remove this worker's temporary folder (the run is over)."""
        shutil.rmtree(self._folder, ignore_errors=True)

    @contextlib.contextmanager
    def _unpacked(self, chunk: Chunk) -> Any:
        path = self._folder / f"input{chunk.suffix}"
        path.write_bytes(chunk.data)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)


def _remove_stale_folders() -> None:
    """Temporary folders of workers on this machine whose process is gone (killed mid-task)."""
    from masquerade.media.atomic import process_alive

    with contextlib.suppress(OSError):
        for entry in os.scandir(tempfile.gettempdir()):
            match = _FOLDER.match(entry.name)
            if match and entry.is_dir(follow_symlinks=False) and not process_alive(int(match["pid"])):
                shutil.rmtree(entry.path, ignore_errors=True)
