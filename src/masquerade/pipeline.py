"""The one module that knows the order of the stages.

detect/track -> select -> guard -> swap -> enhance -> watermark: the content guard sees every image
(and the sampled frames of a video, with a view around every face to be swapped) before anything is
swapped. A ``Pipeline`` holds the stage objects of one run (built once from a ``RunConfig``, private);
the stateful video stages (tracker, selector, guard sampling) are created per video so nothing leaks
between runs.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from masquerade._stages.guard import ContentGuard
from masquerade._stages.protocols import Stages
from masquerade._stages.select import FaceSelector, largest, reference_embedding
from masquerade._stages.watermark import WatermarkEmbedder
from masquerade.config import RunConfig, SelectOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.types import Face, FrameContext, Image

FrameBatchStep = Callable[[list[FrameContext]], list[FrameContext]]
"""A video stage: a batch of consecutive frames in, the same frames out (changed in place)."""


@dataclass(frozen=True, eq=False)
class PreparedSource:
    """The source identity, made by :meth:`Pipeline.prepare_source` after the content guard passed its
    photos. Opaque: only the pipeline that made it accepts it (a hand-built or copied one is refused)."""

    faces: tuple[Face, ...]
    """The source faces, one per photo."""
    _swapper_input: Any = field(repr=False)


class Pipeline:
    """A run's stages in order, with the content guard and the watermark that no call can leave out.

    Every way in (``swap_image``, ``swap_frames``, ``video_stages``) checks content with the guard and
    watermarks what it returns; sources are accepted only as this pipeline prepared them.
    """

    def __init__(
        self, config: RunConfig | None = None, on_notice: Callable[[str], None] | None = None
    ) -> None:
        """``on_notice`` hears at once about slow one-time work while the stages are built."""
        from masquerade._stages.build import build_stages

        config = config or RunConfig()
        self._init(config, build_stages(config, on_notice))

    @classmethod
    def _with_stages(cls, config: RunConfig, stages: Stages) -> Pipeline:
        """A pipeline over stages built elsewhere (the bench's stand-ins, tests). Private: the guard and
        the watermark are still the pipeline's own."""
        pipeline = cls.__new__(cls)
        pipeline._init(config, stages)
        return pipeline

    def _init(self, config: RunConfig, stages: Stages) -> None:
        self._config = config
        self._stages = stages
        # The content guard and the watermark are not stages a caller can hand in or leave out:
        # every pipeline makes its own, so no option or API path runs without them.
        self._guard = ContentGuard(threads=config.runtime.execution_threads)
        self._watermark = WatermarkEmbedder()
        self._issued: weakref.WeakSet[PreparedSource] = weakref.WeakSet()

    @property
    def config(self) -> RunConfig:
        return self._config

    @property
    def notices(self) -> tuple[str, ...]:
        """Messages the user must see before the run: licence terms, models imported with an unknown
        hash, int8 figures, backend fallbacks."""
        return tuple(self._stages.notices)

    @property
    def guard(self) -> ContentGuard:
        """The run's content guard (read-only, its threshold fixed: it cannot be replaced or removed)."""
        return self._guard

    @property
    def watermark(self) -> WatermarkEmbedder:
        """The run's watermark embedder (read-only: it cannot be replaced or removed)."""
        return self._watermark

    # -- sources and reference -------------------------------------------------------------
    def prepare_source(self, sources: Sequence[tuple[str, Image]]) -> PreparedSource:
        """Check and analyse the source photos; raise NoSourceFaceError naming a photo without a face,
        ContentRefused naming one the guard refuses."""
        pairs: list[tuple[Image, Face]] = []
        for label, image in sources:
            face = largest(self._stages.analyser.detect(image))
            self._guard.check_image(image, label, [face] if face is not None else [])
            if face is None:
                raise NoSourceFaceError(f"no face found in source image {label}")
            pairs.append((image, face))
        prepared = PreparedSource(tuple(face for _, face in pairs), self._stages.swapper.prepare(pairs))
        self._issued.add(prepared)
        return prepared

    def _source_input(self, source: PreparedSource) -> Any:
        """The swapper's input of a source this pipeline prepared (and so checked); else UsageError."""
        if not isinstance(source, PreparedSource) or source not in self._issued:
            raise UsageError("the source must come from this pipeline's prepare_source (which checks it)")
        return source._swapper_input

    def reference_embedding(self, label: str, image: Image) -> np.ndarray:
        """Embedding of the largest face of a --reference image."""
        if self._stages.recognizer is None:
            raise RuntimeError("reference matching needs a recognizer")
        try:
            return reference_embedding(image, self._stages.analyser, self._stages.recognizer)
        except NoSourceFaceError:
            raise NoSourceFaceError(f"no face found in reference image {label}") from None

    def new_selector(
        self, reference: np.ndarray | None, options: SelectOptions | None = None
    ) -> FaceSelector:
        """A face selector with the run's options, or ``options`` (a live preview changes the face mode
        without building another pipeline; reference matching needs a pipeline built for it)."""
        return FaceSelector(options or self._config.select, self._stages.recognizer, reference)

    def detect_faces(self, image: Image) -> list[Face]:
        """The faces the run's detector finds in ``image`` (with landmarks), largest first."""
        return sorted(self._stages.analyser.detect(image), key=lambda f: -f.size)

    # -- images -----------------------------------------------------------------------------
    def find_faces(self, image: Image, label: str = "target", embed: bool = False) -> list[Face]:
        """The faces of ``image``, counted from the left as ``--face-index`` counts them, after the
        content guard has passed it (raises ``ContentRefused`` naming ``label``): what a UI offers to
        pick from. ``embed``: with the pipeline's recognizer, also give each face its identity
        embedding (reference matching over these faces then reuses it)."""
        faces = self._stages.analyser.detect(image)
        self._guard.check_image(image, label, faces)
        recognizer = self._stages.recognizer
        if embed and recognizer is not None:
            faces = [face.with_(embedding=recognizer.embed(image, face)) for face in faces]
        return sorted(faces, key=lambda f: float(f.center[0]))

    def swap_image(
        self, image: Image, source: PreparedSource, selector: FaceSelector | None = None,
        faces: Sequence[Face] | None = None,
    ) -> tuple[Image, int]:
        """Swap the selected faces of one still image; return the watermarked result and the count.

        ``faces``: this image's faces as ``find_faces`` gave them, when a caller (a live preview of one
        frame under changing settings) already has them; else they are detected here. The guard
        examines the image, tiled when large, and a view around every face to be swapped."""
        swapper_input = self._source_input(source)
        selector = selector or self.new_selector(None)
        ctx = FrameContext(index=0, image=image)
        start = time.perf_counter()
        ctx.faces = list(faces) if faces is not None else self._stages.analyser.detect(image)
        _add(ctx, "detect", start)
        self._select(ctx, selector)
        start = time.perf_counter()
        self._guard.check_image(image, "target", ctx.selected)
        _add(ctx, "guard", start)
        self._render([ctx], swapper_input)
        return ctx.image, ctx.swapped

    # -- videos -----------------------------------------------------------------------------
    def video_stages(
        self, source: PreparedSource, fps: float, reference: np.ndarray | None
    ) -> tuple[FrameBatchStep, FrameBatchStep]:
        """``(analyse, render)`` for one video (with its own tracker, selector and guard sampling).

        ``analyse`` runs tracking, selection and the guard frame by frame, in order: each frame's
        tracking starts from the one before. ``render`` swaps the selected faces of a whole batch in
        one call, then enhances and watermarks; it needs nothing from earlier frames, so the engine
        renders batch k on a worker thread while batch k + 1 is analysed. ``render`` takes only frames
        that this ``analyse`` returned, unchanged (same image, same faces): anything else is a
        UsageError, so no frame is swapped without the guard's sampling having seen it.
        """
        from masquerade._stages.track import FaceTracker

        swapper_input = self._source_input(source)
        tracker = FaceTracker(self._stages.analyser, self._config.track, fps=fps)
        selector = self.new_selector(reference)
        guard = self._guard.video(fps)
        analysed: dict[int, tuple[FrameContext, Image, tuple[Face, ...]]] = {}
        lock = threading.Lock()  # render runs on worker threads while analyse goes on

        def analyse(batch: list[FrameContext]) -> list[FrameContext]:
            for ctx in batch:
                start = time.perf_counter()
                ctx.faces = tracker.update(ctx.image, ctx.index)
                _add(ctx, "track", start)
                self._select(ctx, selector)
                start = time.perf_counter()
                guard.check(ctx)
                _add(ctx, "guard", start)
                ctx.image.flags.writeable = False  # the pixels the guard passed are the ones swapped
                with lock:
                    analysed[id(ctx)] = (ctx, ctx.image, tuple(ctx.selected))
            return batch

        def render(batch: list[FrameContext]) -> list[FrameContext]:
            with lock:
                tickets = [analysed.pop(id(ctx), None) for ctx in batch]
            for ctx, ticket in zip(batch, tickets, strict=True):
                if (ticket is None or ticket[0] is not ctx or ticket[1] is not ctx.image
                        or len(ticket[2]) != len(ctx.selected)
                        or any(a is not b for a, b in zip(ticket[2], ctx.selected, strict=True))):
                    raise UsageError("render takes only frames that this video's analyse returned, unchanged")
            self._render(batch, swapper_input)
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

        runtime = self._config.runtime
        if runtime.frame_batch is not None:
            return runtime.frame_batch
        return 8 if runtime.execution_provider in TORCH_PROVIDERS else 1

    def frame_workers(self) -> int:
        """Threads that render batches: ``--frame-workers``, else half the cores (1 to 4). Even one
        overlaps rendering with the analysis of the next batch."""
        workers = self._config.runtime.frame_workers
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
    @staticmethod
    def _select(ctx: FrameContext, selector: FaceSelector) -> None:
        start = time.perf_counter()
        ctx.selected = list(selector(ctx.image, ctx.faces))
        _add(ctx, "select", start)

    def _render(self, batch: list[FrameContext], swapper_input: Any) -> None:
        """Swap the selected faces (one call for the whole batch), enhance and watermark, in place."""
        todo = [i for i, ctx in enumerate(batch) if ctx.selected]
        if todo:
            start = time.perf_counter()
            images = self._stages.swapper.swap_batch([batch[i].image for i in todo],
                                                     [batch[i].selected for i in todo], swapper_input)
            _share(batch, todo, "swap", start)
            enhancer = self._stages.enhancer
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
