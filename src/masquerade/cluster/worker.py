"""The work one cluster worker does. Ray runs a ``SwapWorker`` as an actor: its process builds the
pipeline (loads the models) and prepares the source once, then takes segment and image tasks until
the run ends. Everything a task needs travels with it (the segment's packets, the decided person),
so a worker on another machine needs masquerade installed and nothing else: no shared files.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masquerade._version import __version__
from masquerade.api import different_people, swap_loaded_image
from masquerade.config import RunConfig
from masquerade.media.segments import Segment, SegmentPlan
from masquerade.pipeline import Pipeline
from masquerade.split import Person, SegmentResult, decide_person, swap_segment
from masquerade.types import Image


@dataclass(frozen=True)
class WorkerInfo:
    """Where a worker runs and what its models told the user."""

    pid: int
    host: str
    version: str
    notices: tuple[str, ...]
    """What the models told the user (licences...)."""
    warnings: tuple[str, ...]
    """What the sources made the pipeline warn about (photos of different people)."""


@dataclass(frozen=True)
class Chunk:
    """A segment's packets, as ``cut_segment`` wrote them (``suffix`` names their format)."""

    data: bytes
    suffix: str


def worker_config(config: RunConfig, cpus: int) -> RunConfig:
    """The run's options with the threads a worker asked Ray for (unless the run set them)."""
    runtime = config.runtime
    return dataclasses.replace(config, runtime=dataclasses.replace(
        runtime,
        execution_threads=runtime.execution_threads or cpus,
        frame_workers=runtime.frame_workers or max(1, cpus // 2),
    ))


class SwapWorker:
    """One worker process: a pipeline and a prepared source, built once; its methods are tasks.

    Every task names the run's source photos (``sources``): the first one builds the pipeline and
    prepares them, the others reuse both. So a worker that Ray restarts after its process died builds
    them again on its next task, from the same photos.
    """

    def __init__(self, config: RunConfig, cpus: int) -> None:
        self.config = worker_config(config, cpus)
        self.cpus = cpus
        self._pipeline: Pipeline | None = None

    def _photos(self, sources: Any) -> list[tuple[str, Image]]:
        """The source photos from what a task was given (the photos themselves here)."""
        return sources

    def _ready(self, sources: Any) -> Pipeline:
        if self._pipeline is None:
            import cv2

            cv2.setNumThreads(self.cpus)  # this process's own setting: it asked Ray for ``cpus`` CPUs
            photos = self._photos(sources)
            pipeline = Pipeline(self.config)
            self.source = pipeline.prepare_source(photos)
            self.warnings = tuple(different_people(pipeline, photos, self.source))
            self._pipeline = pipeline
        return self._pipeline

    def info(self, sources: Any) -> WorkerInfo:
        """Builds the pipeline (loads the models) and says where this worker runs."""
        pipeline = self._ready(sources)
        return WorkerInfo(os.getpid(), socket.gethostname(), __version__, tuple(pipeline.stages.notices),
                          self.warnings)

    def decide_person(self, sources: Any, reference_image: tuple[str, Image] | None, chunk: Chunk | None,
                      plan: SegmentPlan | None, span: Segment | None) -> Person | None:
        """``split.decide_person`` on the reference image, or on the frames of ``span`` (from the
        video's first frame) when there is none."""
        pipeline = self._ready(sources)
        if chunk is None or plan is None or span is None:
            return decide_person(pipeline, reference_image, None, 25.0)
        from masquerade.api import fps_of
        from masquerade.media.reader import VideoReader

        with tempfile.TemporaryDirectory(prefix="masquerade-person-") as folder:
            path = _unpack(chunk, Path(folder))
            limit = pipeline.config.limits.max_video_pixels
            with VideoReader(path, max_pixels=limit, window=plan.window(span)) as reader:
                return decide_person(pipeline, reference_image, reader.frames(), fps_of(reader))

    def swap_segment(self, sources: Any, person: Person, chunk: Chunk, plan: SegmentPlan, segment: Segment,
                     suffix: str) -> tuple[SegmentResult, bytes]:
        """One segment, encoded in the output's format (``suffix``); returns its run and its bytes."""
        pipeline = self._ready(sources)
        with tempfile.TemporaryDirectory(prefix="masquerade-segment-") as folder:
            path = _unpack(chunk, Path(folder))
            output = Path(folder) / f"swapped{suffix}"
            result = swap_segment(pipeline, self.source, person, path, plan, segment, output)
            return result, output.read_bytes()

    def swap_image(self, sources: Any, person: Person, image: Image, grey: bool) -> tuple[np.ndarray, int]:
        """One target picture; returns the watermarked result and the faces swapped."""
        return swap_loaded_image(self._ready(sources), self.source, person.reference, image, grey)


def _unpack(chunk: Chunk, folder: Path) -> Path:
    path = folder / f"input{chunk.suffix}"
    path.write_bytes(chunk.data)
    return path
