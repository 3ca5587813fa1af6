"""The one module that knows the order of the stages.

Swapping: detect/track -> identify (``--map``) -> select -> swap -> enhance -> watermark, with the
content guard before anything is written. Finding people: detect/track -> collect each track's best
frames -> cluster. A ``Pipeline`` holds the stage objects of one run (built once from a
``RunConfig``); the stateful video stages (tracker, mapper, selector) are created per video so nothing
leaks between runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masquerade._stages.guard import ContentGuard
from masquerade._stages.identity import IdentityMapper
from masquerade._stages.protocols import Stages
from masquerade._stages.select import FaceSelector, largest, reference_embedding
from masquerade._stages.tracklets import (
    MIN_TRACKLET_S,
    Tracklet,
    TrackletCollector,
    group_people,
    summarise,
)
from masquerade._stages.watermark import WatermarkEmbedder
from masquerade.config import RunConfig
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.people import People
from masquerade.types import Face, FrameContext, Image

FrameBatchStep = Callable[[list[FrameContext]], list[FrameContext]]
"""A video stage: a batch of consecutive frames in, the same frames out (changed in place)."""


@dataclass(frozen=True)
class PreparedSource:
    """The source identity, ready for the swapper, plus the faces it came from."""

    swapper_input: Any
    faces: tuple[Face, ...]


@dataclass(frozen=True, eq=False)
class MappedPerson:
    """One ``--map`` entry, prepared: whose faces (the reference's embedding) get which source."""

    label: str
    reference: np.ndarray
    source: PreparedSource
    source_labels: tuple[str, ...]


@dataclass(frozen=True)
class SourceMap:
    """Which source goes on which face: each mapped person's own source on that person's faces, and
    ``default`` on the other faces that ``--faces`` selects. With no source at all the run only
    enhances the selected faces (``masquerade enhance``)."""

    default: PreparedSource | None = None
    people: tuple[MappedPerson, ...] = ()


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

    @property
    def threshold(self) -> float:
        """Identity distance within which two faces are one person: ``--similarity``, else the
        recognizer's measured default."""
        if self.config.select.similarity is not None:
            return self.config.select.similarity
        return self.stages.recognizer.default_threshold if self.stages.recognizer is not None else 0.0

    # -- sources and reference -------------------------------------------------------------
    def prepare_source(self, sources: Sequence[tuple[str, Image]]) -> PreparedSource:
        """Check and analyse the source photos; raise NoSourceFaceError naming a photo without a face."""
        if self.stages.swapper is None:
            raise UsageError("this run only enhances faces: it takes no source photo")
        pairs: list[tuple[Image, Face]] = []
        for label, image in sources:
            self._guard.check_image(image, label)
            face = largest(self.stages.analyser.detect(image))
            if face is None:
                raise NoSourceFaceError(f"no face found in source image {label}")
            pairs.append((image, face))
        return PreparedSource(self.stages.swapper.prepare(pairs), tuple(face for _, face in pairs))

    def prepare_map(
        self, sources: Sequence[tuple[str, Image]],
        mapping: Sequence[tuple[tuple[str, Image], Sequence[tuple[str, Image]]]] = (),
    ) -> SourceMap:
        """The run's sources: ``sources`` for the faces ``--faces`` selects (may be empty when there is a
        mapping) and, per mapped person, ``((label, reference image), that person's sources)``.

        Two references of one person with different sources are a UsageError (no face could say which
        it should get); a reference without a face is a NoSourceFaceError naming it."""
        people = []
        for (label, image), person_sources in mapping:
            people.append(MappedPerson(label, self.reference_embedding(label, image),
                                       self.prepare_source(person_sources),
                                       tuple(name for name, _ in person_sources)))
        recognizer = self.stages.recognizer
        for i, a in enumerate(people):
            for b in people[i + 1:]:
                assert recognizer is not None
                distance = recognizer.distance(a.reference, b.reference)
                if distance <= self.threshold and a.source_labels != b.source_labels:
                    raise UsageError(f"--map references {a.label} and {b.label} show the same person "
                                     f"(distance {distance:.2f} <= {self.threshold:.2f}) but name different "
                                     "sources; give that person one source")
        default = self.prepare_source(sources) if sources else None
        if default is None and not people:
            raise UsageError("give a source image (-s) or --map REFERENCE=SOURCE")
        return SourceMap(default, tuple(people))

    def reference_embedding(self, label: str, image: Image) -> np.ndarray:
        """Embedding of the largest face of a --reference image."""
        if self.stages.recognizer is None:
            raise RuntimeError("reference matching needs a recognizer")
        try:
            return reference_embedding(image, self.stages.analyser, self.stages.recognizer)
        except NoSourceFaceError:
            raise NoSourceFaceError(f"no face found in reference image {label}") from None

    def face_embedding(self, image: Image, face: Face) -> np.ndarray:
        """Identity embedding of one face of ``image`` (e.g. a reference picked in a target frame)."""
        if self.stages.recognizer is None:
            raise RuntimeError("reference matching needs a recognizer")
        return np.asarray(self.stages.recognizer.embed(image, face), np.float32)

    def faces_from_left(self, image: Image) -> list[Face]:
        """The faces of ``image``, counted from the left as ``--face-index`` counts them."""
        return sorted(self.stages.analyser.detect(image), key=lambda f: float(f.center[0]))

    def new_selector(self, reference: np.ndarray | None) -> FaceSelector:
        return FaceSelector(self.config.select, self.stages.recognizer, reference)

    def _sources(self, source: PreparedSource | SourceMap) -> SourceMap:
        sources = source if isinstance(source, SourceMap) else SourceMap(default=source)
        if sources.default is None and not sources.people and self.stages.enhancer is None:
            raise UsageError("nothing to do: no source to swap in and no enhancer")
        return sources

    def _new_mapper(self, sources: SourceMap) -> IdentityMapper | None:
        if not sources.people:
            return None
        if self.stages.recognizer is None:
            raise RuntimeError("--map needs a recognizer")
        return IdentityMapper(self.stages.recognizer, [p.reference for p in sources.people], self.threshold)

    # -- images -----------------------------------------------------------------------------
    def swap_image(
        self, image: Image, source: PreparedSource | SourceMap, selector: FaceSelector | None = None
    ) -> tuple[Image, int]:
        """Swap the selected faces of one still image; return the watermarked result and the count."""
        sources = self._sources(source)
        self._guard.check_image(image, "target")
        ctx = FrameContext(index=0, image=image)
        start = time.perf_counter()
        ctx.faces = self.stages.analyser.detect(image)
        _add(ctx, "detect", start)
        self._select(ctx, self._faces_selector(sources, selector), self._new_mapper(sources))
        self._render([ctx], sources)
        return ctx.image, ctx.swapped

    def enhance_image(self, image: Image, selector: FaceSelector | None = None) -> tuple[Image, int]:
        """Enhance the selected faces of one still image (no swap); watermarked result and count."""
        return self.swap_image(image, SourceMap(), selector)

    # -- videos -----------------------------------------------------------------------------
    def video_stages(
        self, source: PreparedSource | SourceMap, fps: float, reference: np.ndarray | None
    ) -> tuple[FrameBatchStep, FrameBatchStep]:
        """``(analyse, render)`` for one video (with its own tracker, mapper and selector).

        ``analyse`` runs the guard, tracking, identification and selection frame by frame, in order:
        each frame's tracking and each track's identity start from the frames before. ``render``
        swaps the selected faces of a whole batch (one swapper call per source), then enhances and
        watermarks; it needs nothing from earlier frames, so the engine renders batch k on a worker
        thread while batch k + 1 is analysed.
        """
        from masquerade._stages.track import FaceTracker

        sources = self._sources(source)
        tracker = FaceTracker(self.stages.analyser, self.config.track, fps=fps)
        mapper = self._new_mapper(sources)
        selector = self._faces_selector(sources, self.new_selector(reference))
        guard = self._guard
        guard.reset()  # sampling (first frame, 1/s, scene cuts) restarts with each video

        def analyse(batch: list[FrameContext]) -> list[FrameContext]:
            for ctx in batch:
                start = time.perf_counter()
                guard.check_frame(ctx, fps)
                _add(ctx, "guard", start)
                start = time.perf_counter()
                ctx.faces = tracker.update(ctx.image, ctx.index)
                _add(ctx, "track", start)
                self._select(ctx, selector, mapper)
            return batch

        def render(batch: list[FrameContext]) -> list[FrameContext]:
            self._render(batch, sources)
            return batch

        return analyse, render

    def video_processor(
        self, source: PreparedSource | SourceMap, fps: float, reference: np.ndarray | None
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
        self, frames: Iterable[FrameContext], source: PreparedSource | SourceMap, fps: float,
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

    # -- people -----------------------------------------------------------------------------
    def find_people(self, frames: Iterable[FrameContext], fps: float, target: Path | None = None,
                    on_frame: Callable[[FrameContext], None] | None = None) -> People:
        """The distinct people of a video: every face tracked, each track's best frames embedded, the
        tracks clustered at the recognizer's threshold. The guard samples frames as a swap does."""
        groups, count = self.people_tracklets(frames, fps, on_frame)
        return summarise(groups, target=target, kind="video", frames=count, fps=fps,
                         threshold=self.threshold, recognizer=self._people_recognizer().name)

    def people_tracklets(self, frames: Iterable[FrameContext], fps: float,
                         on_frame: Callable[[FrameContext], None] | None = None,
                         ) -> tuple[list[list[Tracklet]], int]:
        """``find_people``'s analysis: the tracklets grouped into people, and the number of frames."""
        from masquerade._stages.track import FaceTracker

        recognizer = self._people_recognizer()
        tracker = FaceTracker(self.stages.analyser, self.config.track, fps=fps)
        collector = TrackletCollector(recognizer, fps)
        self._guard.reset()
        count = 0
        for ctx in frames:
            self._guard.check_frame(ctx, fps)
            ctx.faces = tracker.update(ctx.image, ctx.index)
            collector.add(ctx.image, ctx.index, ctx.time if ctx.time is not None else ctx.index / fps,
                          ctx.faces)
            count += 1
            if on_frame is not None:
                on_frame(ctx)
        min_frames = max(1, round(MIN_TRACKLET_S * fps))
        return group_people(collector.tracklets(), recognizer, self.threshold, min_frames), count

    def find_people_in_image(self, image: Image, target: Path | None = None) -> People:
        """The people of a still image: each face is one person (a picture shows nobody twice)."""
        recognizer = self._people_recognizer()
        self._guard.check_image(image, "target")
        collector = TrackletCollector(recognizer, 1.0)
        collector.add(image, 0, 0.0, self.stages.analyser.detect(image))
        groups = group_people(collector.tracklets(), recognizer, self.threshold)
        return summarise(groups, target=target, kind="image", frames=1, fps=None, threshold=self.threshold,
                         recognizer=recognizer.name)

    def _people_recognizer(self) -> Any:
        if self.stages.recognizer is None:
            raise RuntimeError("finding people needs a recognizer")
        return self.stages.recognizer

    # -- shared -----------------------------------------------------------------------------
    def _faces_selector(self, sources: SourceMap, selector: FaceSelector | None) -> FaceSelector | None:
        """``--faces`` chooses where the default source goes (or, enhancing only, what to enhance);
        with only mapped sources, nothing but the mapped people is touched."""
        if sources.people and sources.default is None:
            return None
        return selector or self.new_selector(None)

    @staticmethod
    def _select(ctx: FrameContext, selector: FaceSelector | None, mapper: IdentityMapper | None) -> None:
        start = time.perf_counter()
        if mapper is not None:
            ctx.faces = mapper(ctx.image, ctx.faces)
            _add(ctx, "identify", start)
            start = time.perf_counter()
        chosen = [face for face in ctx.faces if face.person is not None]
        if selector is not None:
            chosen += selector(ctx.image, [face for face in ctx.faces if face.person is None])
        ctx.selected = sorted(chosen, key=lambda f: float(f.center[0]))
        _add(ctx, "select", start)

    def _render(self, batch: list[FrameContext], sources: SourceMap) -> None:
        """Swap the selected faces (one swapper call per source over the whole batch), enhance and
        watermark, in place."""
        todo = [i for i, ctx in enumerate(batch) if ctx.selected]
        inputs: list[tuple[int | None, PreparedSource | None]] = [(None, sources.default)]
        inputs += [(k, person.source) for k, person in enumerate(sources.people)]
        swapped = [0] * len(batch)
        swapper = self.stages.swapper
        if todo and swapper is not None:
            start = time.perf_counter()
            for person, source in inputs:
                faces = {i: [f for f in batch[i].selected if f.person == person] for i in todo}
                frames = [i for i in todo if faces[i]]
                if source is None or not frames:
                    continue
                images = swapper.swap_batch([batch[i].image for i in frames], [faces[i] for i in frames],
                                            source.swapper_input)
                for image, i in zip(images, frames, strict=True):
                    batch[i].image = image
                    swapped[i] += len(faces[i])
            _share(batch, todo, "swap", start)
        enhancer = self.stages.enhancer
        if todo and enhancer is not None:
            start = time.perf_counter()
            for i in todo:
                batch[i].image = enhancer.enhance_many(batch[i].image, batch[i].selected)
            _share(batch, todo, "enhance", start)
        enhance_only = sources.default is None and not sources.people
        for i, ctx in enumerate(batch):
            start = time.perf_counter()
            ctx.image = self._watermark(ctx.image)
            _add(ctx, "watermark", start)
            ctx.swapped = len(ctx.selected) if enhance_only else swapped[i]  # enhancing: faces enhanced


def _share(batch: list[FrameContext], indices: list[int], stage: str, start: float) -> None:
    """Spread one batched call's time evenly over the frames it served."""
    share = (time.perf_counter() - start) / len(indices)
    for i in indices:
        batch[i].timings[stage] = batch[i].timings.get(stage, 0.0) + share


def _add(ctx: FrameContext, stage: str, start: float) -> None:
    ctx.timings[stage] = ctx.timings.get(stage, 0.0) + time.perf_counter() - start
