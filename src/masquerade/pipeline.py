"""The one module that knows the order of the stages.

detect/track -> select -> swap -> enhance -> watermark, with the content guard before anything is
written. A ``Pipeline`` holds the stage objects of one run (built once from a ``RunConfig``); the
stateful video stages (tracker, selector) are created per video so nothing leaks between runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from masquerade._stages.guard import ContentGuard
from masquerade._stages.protocols import Stages
from masquerade._stages.select import FaceSelector, largest, reference_embedding
from masquerade._stages.watermark import WatermarkEmbedder
from masquerade.config import RunConfig
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.types import Face, FrameContext, Image

FrameBatchStep = Callable[[list[FrameContext]], list[FrameContext]]
"""A video stage: a batch of consecutive frames in, the same frames out (changed in place)."""


@dataclass(frozen=True)
class PreparedSource:
    """The source identity, ready for the swapper, plus the faces it came from."""

    swapper_input: Any
    faces: tuple[Face, ...]


class Pipeline:
    def __init__(
        self,
        config: RunConfig | None = None,
        stages: Stages | None = None,
        on_notice: Callable[[str], None] | None = None,
    ) -> None:
        """``on_notice`` hears at once about slow one-time work while the stages are built."""
        self.config = config or RunConfig()
        if stages is None:
            from masquerade._stages.build import build_stages

            stages = build_stages(self.config, on_notice)
        self.stages = stages
        # The content guard and the watermark are not stages a caller can hand in or leave out:
        # every pipeline makes its own, so no option or API path runs without them.
        self._guard = ContentGuard(threads=self.config.runtime.execution_threads)
        self._watermark = WatermarkEmbedder()

    @property
    def guard(self) -> ContentGuard:
        """The run's content guard (read-only: it cannot be replaced or removed)."""
        return self._guard

    @property
    def watermark(self) -> WatermarkEmbedder:
        """The run's watermark embedder (read-only: it cannot be replaced or removed)."""
        return self._watermark

    # -- sources and reference -------------------------------------------------------------
    def prepare_source(self, sources: Sequence[tuple[str, Image]]) -> PreparedSource:
        """Check and analyse the source photos; raise NoSourceFaceError naming a photo without a face."""
        pairs: list[tuple[Image, Face]] = []
        for label, image in sources:
            self._guard.check_image(image, label)
            face = largest(self.stages.analyser.detect(image))
            if face is None:
                raise NoSourceFaceError(f"no face found in source image {label}")
            pairs.append((image, face))
        return PreparedSource(self.stages.swapper.prepare(pairs), tuple(face for _, face in pairs))

    def reference_embedding(self, label: str, image: Image) -> np.ndarray:
        """Embedding of the largest face of a --reference image."""
        if self.stages.recognizer is None:
            raise RuntimeError("reference matching needs a recognizer")
        try:
            return reference_embedding(image, self.stages.analyser, self.stages.recognizer)
        except NoSourceFaceError:
            raise NoSourceFaceError(f"no face found in reference image {label}") from None

    def new_selector(self, reference: np.ndarray | None, adopt: bool = True) -> FaceSelector:
        """``adopt``: see ``FaceSelector`` (False when the run's person was looked for and not found)."""
        return FaceSelector(self.config.select, self.stages.recognizer, reference, adopt=adopt)

    def adopted_reference(self, frames: Iterable[FrameContext], fps: float) -> np.ndarray | None:
        """The person a ``--faces reference`` video run without a reference image swaps: the embedding
        of the largest face in the first frame where tracking finds one; None when no frame has one.

        Reads only as far as that frame, tracking as ``video_stages`` does, so a run split into
        segments can decide the person once, as a run from the start would, and hand it to each
        segment (with ``adopt_reference=False`` for None). Nothing is written, so no guard is needed.
        """
        from masquerade._stages.track import FaceTracker

        if self.config.select.mode != "reference":
            raise ValueError("only --faces reference swaps a person adopted from the video")
        tracker = FaceTracker(self.stages.analyser, self.config.track, fps=fps)
        selector = self.new_selector(None)
        for ctx in frames:
            faces = tracker.update(ctx.image, ctx.index)
            if faces:
                selector(ctx.image, faces)
                return selector.reference
        return None

    # -- images -----------------------------------------------------------------------------
    def swap_image(
        self, image: Image, source: PreparedSource, selector: FaceSelector | None = None
    ) -> tuple[Image, int]:
        """Swap the selected faces of one still image; return the watermarked result and the count."""
        self._guard.check_image(image, "target")
        selector = selector or self.new_selector(None)
        ctx = FrameContext(index=0, image=image)
        start = time.perf_counter()
        ctx.faces = self.stages.analyser.detect(image)
        _add(ctx, "detect", start)
        self._swap_selected(ctx, source, selector)
        return ctx.image, ctx.swapped

    # -- videos -----------------------------------------------------------------------------
    def video_stages(
        self, source: PreparedSource, fps: float, reference: np.ndarray | None, *,
        output_from: int = 0, adopt_reference: bool = True,
    ) -> tuple[FrameBatchStep, FrameBatchStep]:
        """``(analyse, render)`` for one video (with its own tracker and selector).

        ``analyse`` runs the guard, tracking and selection frame by frame, in order: each frame's
        tracking starts from the one before. ``render`` swaps the selected faces of a whole batch in
        one call, then enhances and watermarks; it needs nothing from earlier frames, so the engine
        renders batch k on a worker thread while batch k + 1 is analysed.

        A segment of a longer video starts reading a little before its first frame: frames with an
        index below ``output_from`` are a warm-up, tracked and selected (so tracking and smoothing
        reach the segment's first frame as they would in a run from the start) but never rendered,
        so the guard skips them and its sampling starts with frame ``output_from`` as a first frame.
        ``adopt_reference``: see ``new_selector``.
        """
        from masquerade._stages.track import FaceTracker

        tracker = FaceTracker(self.stages.analyser, self.config.track, fps=fps)
        selector = self.new_selector(reference, adopt_reference)
        guard = self._guard
        guard.reset()  # sampling (first frame, 1/s, scene cuts) restarts with each video

        def analyse(batch: list[FrameContext]) -> list[FrameContext]:
            for ctx in batch:
                if ctx.index >= output_from:
                    start = time.perf_counter()
                    guard.check_frame(ctx, fps)
                    _add(ctx, "guard", start)
                start = time.perf_counter()
                ctx.faces = tracker.update(ctx.image, ctx.index)
                _add(ctx, "track", start)
                self._select(ctx, selector)
            return batch

        def render(batch: list[FrameContext]) -> list[FrameContext]:
            if any(ctx.index < output_from for ctx in batch):
                raise UsageError("warm-up frames are analysed only; the guard did not sample them")
            self._render(batch, source)
            return batch

        return analyse, render

    def video_processor(
        self, source: PreparedSource, fps: float, reference: np.ndarray | None
    ) -> FrameBatchStep:
        """Both video stages in one call: a batch of consecutive frames in, processed, in order."""
        analyse, render = self.video_stages(source, fps, reference)
        return lambda batch: render(analyse(batch))

    def frame_batch(self) -> int:
        """Frames per processing batch: ``--frame-batch``, else 8 on the PyTorch providers (the GPU
        gains from batching) and 1 elsewhere (ONNX Runtime's swap graphs pin batch 1)."""
        from masquerade._backends import TORCH_PROVIDERS

        runtime = self.config.runtime
        if runtime.frame_batch is not None:
            return runtime.frame_batch
        return 8 if runtime.execution_provider in TORCH_PROVIDERS else 1

    def frame_workers(self) -> int:
        """Threads that render batches: ``--frame-workers``, else half the cores (1 to 4). Even one
        overlaps rendering with the analysis of the next batch."""
        workers = self.config.runtime.frame_workers
        return workers if workers is not None else max(1, min(4, (os.cpu_count() or 2) // 2))

    def swap_frames(
        self, frames: Iterable[FrameContext], source: PreparedSource, fps: float,
        reference: np.ndarray | None = None,
    ) -> Iterator[FrameContext]:
        """Sequential generator form of the video path (the file API runs it threaded)."""
        process = self.video_processor(source, fps, reference)
        size = self.frame_batch()
        batch: list[FrameContext] = []
        for ctx in frames:
            batch.append(ctx)
            if len(batch) == size:
                yield from process(batch)
                batch = []
        if batch:
            yield from process(batch)

    # -- shared -----------------------------------------------------------------------------
    def _swap_selected(self, ctx: FrameContext, source: PreparedSource, selector: FaceSelector) -> None:
        self._select(ctx, selector)
        self._render([ctx], source)

    @staticmethod
    def _select(ctx: FrameContext, selector: FaceSelector) -> None:
        start = time.perf_counter()
        ctx.selected = list(selector(ctx.image, ctx.faces))
        _add(ctx, "select", start)

    def _render(self, batch: list[FrameContext], source: PreparedSource) -> None:
        """Swap the selected faces (one call for the whole batch), enhance and watermark, in place."""
        todo = [i for i, ctx in enumerate(batch) if ctx.selected]
        if todo:
            start = time.perf_counter()
            images = self.stages.swapper.swap_batch([batch[i].image for i in todo],
                                                    [batch[i].selected for i in todo], source.swapper_input)
            _share(batch, todo, "swap", start)
            enhancer = self.stages.enhancer
            if enhancer is not None:
                start = time.perf_counter()
                images = [enhancer.enhance_many(image, batch[i].selected)
                          for image, i in zip(images, todo, strict=True)]
                _share(batch, todo, "enhance", start)
            for image, i in zip(images, todo, strict=True):
                batch[i].image = image
        for ctx in batch:
            start = time.perf_counter()
            ctx.image = self._watermark(ctx.image)
            _add(ctx, "watermark", start)
            ctx.swapped = len(ctx.selected)


def _share(batch: list[FrameContext], indices: list[int], stage: str, start: float) -> None:
    """Spread one batched call's time evenly over the frames it served."""
    share = (time.perf_counter() - start) / len(indices)
    for i in indices:
        batch[i].timings[stage] = batch[i].timings.get(stage, 0.0) + share


def _add(ctx: FrameContext, stage: str, start: float) -> None:
    ctx.timings[stage] = ctx.timings.get(stage, 0.0) + time.perf_counter() - start
