"""The one module that knows the order of the stages.

Swapping: detect/track -> identify (``--map``) -> select -> guard -> swap -> enhance -> watermark:
the content guard sees every image (and the sampled frames of a video, with a view around every face
to be swapped) before anything is swapped. Finding people: detect/track -> guard -> collect each
track's best frames -> cluster. A ``Pipeline`` holds the stage objects of one run (built once from a
``RunConfig``, private); the stateful video stages (tracker, mapper, selector, guard sampling) are
created per video so nothing leaks between runs.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
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
from masquerade.config import RunConfig, SelectOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.people import People
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


def default_frame_workers(config: RunConfig, cpus: int) -> int:
    """Render threads when the run does not set them: half the cores, 1 to 4, and at least 2 for the
    embedded swap without an enhancer. Even one overlaps rendering with the analysis of the next
    batch; the embedded swap is NumPy and OpenCV work that a second thread runs beside the first
    while the tracker waits (2 cores, 720p: 7.1 against 6.4 fps with four faces, 14.7 against 14.2
    with one), where a neural model's own threads would only be split further."""
    half = max(1, min(4, cpus // 2))
    embedded = config.swap.swapper == "mesh" and config.enhance.enhancer == "none"
    return max(2, half) if embedded else half


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

    def reconfigured(self, config: RunConfig) -> Pipeline:
        """A pipeline for ``config``: on this pipeline's models when ``config`` needs the same ones
        (only options that steer the run differ: faces, encoder, limits...), else built afresh. Either
        way it has its own content guard and watermark. Lets a server run job after job without
        loading the models again."""
        if _model_key(config) == _model_key(self._config):
            return Pipeline._with_stages(config, self._stages)
        return Pipeline(config)

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

    @property
    def threshold(self) -> float:
        """Identity distance within which two faces are one person: ``--similarity``, else the
        recognizer's measured default."""
        if self._config.select.similarity is not None:
            return self._config.select.similarity
        return self._stages.recognizer.default_threshold if self._stages.recognizer is not None else 0.0

    # -- sources and reference -------------------------------------------------------------
    def prepare_source(self, sources: Sequence[tuple[str, Image]]) -> PreparedSource:
        """Check and analyse the source photos; raise NoSourceFaceError naming a photo without a face,
        ContentRefused naming one the guard refuses."""
        if self._stages.swapper is None:
            raise UsageError("this run only enhances faces: it takes no source photo")
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

    def prepare_map(
        self, sources: Sequence[tuple[str, Image]],
        mapping: Sequence[tuple[tuple[str, Image], Sequence[tuple[str, Image]]]] = (),
        references: Sequence[np.ndarray] | None = None,
    ) -> SourceMap:
        """The run's sources: ``sources`` for the faces ``--faces`` selects (may be empty when there is a
        mapping) and, per mapped person, ``((label, reference image), that person's sources)``.

        ``references``: the mapped people's embeddings when they were decided already (by one worker
        of a cluster run, for all), in the order of ``mapping``; else each reference image's.

        Two references of one person with different sources are a UsageError (no face could say which
        it should get); a reference without a face is a NoSourceFaceError naming it."""
        if references is not None and len(references) != len(mapping):
            raise ValueError(f"{len(references)} reference embeddings for {len(mapping)} mapped people")
        people = []
        for k, ((label, image), person_sources) in enumerate(mapping):
            reference = (np.asarray(references[k], np.float32) if references is not None
                         else self.reference_embedding(label, image))
            people.append(MappedPerson(label, reference, self.prepare_source(person_sources),
                                       tuple(name for name, _ in person_sources)))
        recognizer = self._stages.recognizer
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
        if self._stages.recognizer is None:
            raise RuntimeError("reference matching needs a recognizer")
        try:
            return reference_embedding(image, self._stages.analyser, self._stages.recognizer)
        except NoSourceFaceError:
            raise NoSourceFaceError(f"no face found in reference image {label}") from None

    def new_selector(
        self, reference: np.ndarray | None, options: SelectOptions | None = None, *, adopt: bool = True
    ) -> FaceSelector:
        """A face selector with the run's options, or ``options`` (a live preview changes the face mode
        without building another pipeline; reference matching needs a pipeline built for it).
        ``adopt``: see ``FaceSelector`` (False when the run's person was looked for and not found)."""
        return FaceSelector(options or self._config.select, self._stages.recognizer, reference, adopt=adopt)

    def adopted_reference(
        self, source: PreparedSource | SourceMap, frames: Iterable[FrameContext], fps: float
    ) -> np.ndarray | None:
        """The person a ``--faces reference`` video run without a reference swaps: the embedding of the
        largest face (of those no ``--map`` person claims) in the first frame where tracking finds one;
        None when no frame has one.

        Reads only as far as that frame, tracking, identifying and selecting as ``video_stages`` does,
        so a run split into segments can decide the person once, as a run from the start would, and
        hand it to each segment (``adopt_reference=False`` there when it is None). It returns an
        embedding, never a picture: nothing it reads is swapped or written.
        """
        from masquerade._stages.track import FaceTracker

        if self._config.select.mode != "reference":
            raise ValueError("only --faces reference swaps a person adopted from the video")
        sources = self._sources(source)
        selector = self._faces_selector(sources, self.new_selector(None))
        if selector is None:  # only mapped people are swapped: there is no one to adopt
            return None
        tracker = FaceTracker(self._stages.analyser, self._config.track, fps=fps)
        mapper = self._new_mapper(sources)
        for ctx in frames:
            ctx.faces = tracker.update(ctx.image, ctx.index)
            self._select(ctx, selector, mapper)
            if selector.reference is not None:
                return selector.reference
        return None

    def detect_faces(self, image: Image) -> list[Face]:
        """The faces the run's detector finds in ``image`` (with landmarks), largest first."""
        return sorted(self._stages.analyser.detect(image), key=lambda f: -f.size)

    def face_embedding(self, image: Image, face: Face) -> np.ndarray:
        """Identity embedding of one face of ``image`` (e.g. a reference picked in a target frame)."""
        if self._stages.recognizer is None:
            raise RuntimeError("reference matching needs a recognizer")
        return np.asarray(self._stages.recognizer.embed(image, face), np.float32)

    def faces_from_left(self, image: Image) -> list[Face]:
        """The faces of ``image``, counted from the left as ``--face-index`` counts them."""
        return sorted(self._stages.analyser.detect(image), key=lambda f: float(f.center[0]))

    def _sources(self, source: PreparedSource | SourceMap) -> SourceMap:
        sources = source if isinstance(source, SourceMap) else SourceMap(default=source)
        for prepared in [sources.default, *(person.source for person in sources.people)]:
            if prepared is not None:
                self._source_input(prepared)  # only sources this pipeline prepared (and checked)
        if sources.default is None and not sources.people and self._stages.enhancer is None:
            raise UsageError("nothing to do: no source to swap in and no enhancer")
        return sources

    def _new_mapper(self, sources: SourceMap) -> IdentityMapper | None:
        if not sources.people:
            return None
        if self._stages.recognizer is None:
            raise RuntimeError("--map needs a recognizer")
        return IdentityMapper(self._stages.recognizer, [p.reference for p in sources.people], self.threshold)

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
        self, image: Image, source: PreparedSource | SourceMap, selector: FaceSelector | None = None,
        faces: Sequence[Face] | None = None,
    ) -> tuple[Image, int]:
        """Swap the selected faces of one still image; return the watermarked result and the count.

        ``faces``: this image's faces as ``find_faces`` gave them, when a caller (a live preview of one
        frame under changing settings) already has them; else they are detected here. The guard
        examines the image, tiled when large, and a view around every face to be swapped."""
        sources = self._sources(source)
        ctx = FrameContext(index=0, image=image)
        start = time.perf_counter()
        ctx.faces = list(faces) if faces is not None else self._stages.analyser.detect(image)
        _add(ctx, "detect", start)
        self._select(ctx, self._faces_selector(sources, selector), self._new_mapper(sources))
        start = time.perf_counter()
        self._guard.check_image(image, "target", ctx.selected)
        _add(ctx, "guard", start)
        self._render([ctx], sources)
        return ctx.image, ctx.swapped

    def enhance_image(self, image: Image, selector: FaceSelector | None = None) -> tuple[Image, int]:
        """Enhance the selected faces of one still image (no swap); watermarked result and count."""
        return self.swap_image(image, SourceMap(), selector)

    # -- videos -----------------------------------------------------------------------------
    def video_stages(
        self, source: PreparedSource | SourceMap, fps: float, reference: np.ndarray | None, *,
        output_from: int = 0, adopt_reference: bool = True,
    ) -> tuple[FrameBatchStep, FrameBatchStep]:
        """``(analyse, render)`` for one video (with its own tracker, mapper, selector and guard
        sampling).

        ``analyse`` runs tracking, identification, selection and the guard frame by frame, in order:
        each frame's tracking and each track's identity start from the frames before. ``render``
        swaps the selected faces of a whole batch (one swapper call per source), then enhances and
        watermarks; it needs nothing from earlier frames, so the engine renders batch k on a worker
        thread while batch k + 1 is analysed. ``render`` takes only frames that this ``analyse``
        returned, unchanged (same image, same faces): anything else is a UsageError, so no frame is
        swapped without the guard's sampling having seen it.

        A segment of a longer video (``masquerade.split``) starts reading a little before its first
        frame: frames with an index below ``output_from`` are a warm-up, tracked, identified and
        selected (so tracking, smoothing and identities reach the segment's first frame as they would
        in a run from the start) but not given to the guard and never rendered (``render`` refuses
        them like any frame this ``analyse`` did not pass), so the guard's sampling starts with frame
        ``output_from`` as a first frame. ``adopt_reference``: see ``new_selector``.
        """
        from masquerade._stages.track import FaceTracker

        sources = self._sources(source)
        tracker = FaceTracker(self._stages.analyser, self._config.track, fps=fps)
        mapper = self._new_mapper(sources)
        selector = self._faces_selector(sources, self.new_selector(reference, adopt=adopt_reference))
        guard = self._guard.video(fps)
        analysed: dict[int, tuple[FrameContext, Image, tuple[Face, ...]]] = {}
        lock = threading.Lock()  # render runs on worker threads while analyse goes on

        def analyse(batch: list[FrameContext]) -> list[FrameContext]:
            for ctx in batch:
                start = time.perf_counter()
                ctx.faces = tracker.update(ctx.image, ctx.index)
                _add(ctx, "track", start)
                self._select(ctx, selector, mapper)
                if ctx.index < output_from:
                    continue  # a warm-up frame: analysed for the frames after it, never rendered
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
        gains from batching), 3 for the embedded swap (it analyses a face on one frame of a batch and
        carries that to the others, see ``MeshSwapper.swap_batch``) and 1 elsewhere (ONNX Runtime's
        swap graphs pin batch 1)."""
        from masquerade._backends import TORCH_PROVIDERS

        runtime = self._config.runtime
        if runtime.frame_batch is not None:
            return runtime.frame_batch
        if runtime.execution_provider in TORCH_PROVIDERS:
            return 8
        if self._config.swap.swapper == "mesh":
            from masquerade._stages.swap_mesh import VIDEO_BATCH

            return VIDEO_BATCH
        return 1

    def batch_starts(self) -> Callable[[FrameContext], bool]:
        """Whether a frame starts a processing batch. Batches line up with frame numbers (every
        ``frame_batch()``-th frame starts one), so a run that starts mid-video (a cluster segment)
        batches its frames, and so renders them, exactly as a run over the whole video does."""
        size = self.frame_batch()
        return lambda ctx: ctx.index % size == 0

    def frame_workers(self) -> int:
        """Threads that render batches: ``--frame-workers``, else ``default_frame_workers``."""
        workers = self._config.runtime.frame_workers
        return workers if workers is not None else default_frame_workers(self._config, os.cpu_count() or 2)

    def swap_frames(
        self, frames: Iterable[FrameContext], source: PreparedSource | SourceMap, fps: float,
        reference: np.ndarray | None = None,
    ) -> Iterator[FrameContext]:
        """Sequential generator form of the video path (the file API runs it threaded)."""
        from masquerade.engine import chunks

        process = self.video_processor(source, fps, reference)
        for batch in chunks(frames, self.frame_batch(), self.batch_starts()):
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
        tracker = FaceTracker(self._stages.analyser, self._config.track, fps=fps)
        collector = TrackletCollector(recognizer, fps)
        guard = self._guard.video(fps)
        count = 0
        for ctx in frames:
            ctx.faces = tracker.update(ctx.image, ctx.index)
            ctx.selected = list(ctx.faces)  # every face is looked at, so the guard sees them all
            guard.check(ctx)
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
        faces = self._stages.analyser.detect(image)
        self._guard.check_image(image, "target", faces)
        collector = TrackletCollector(recognizer, 1.0)
        collector.add(image, 0, 0.0, faces)
        groups = group_people(collector.tracklets(), recognizer, self.threshold)
        return summarise(groups, target=target, kind="image", frames=1, fps=None, threshold=self.threshold,
                         recognizer=recognizer.name)

    def _people_recognizer(self) -> Any:
        if self._stages.recognizer is None:
            raise RuntimeError("finding people needs a recognizer")
        return self._stages.recognizer

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
        swapper = self._stages.swapper
        if todo and swapper is not None:
            start = time.perf_counter()
            for person, source in inputs:
                faces = {i: [f for f in batch[i].selected if f.person == person] for i in todo}
                frames = [i for i in todo if faces[i]]
                if source is None or not frames:
                    continue
                images = swapper.swap_batch([batch[i].image for i in frames], [faces[i] for i in frames],
                                            self._source_input(source))
                for image, i in zip(images, frames, strict=True):
                    batch[i].image = image
                    swapped[i] += len(faces[i])
            _share(batch, todo, "swap", start)
        enhancer = self._stages.enhancer
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


def _model_key(config: RunConfig) -> tuple[Any, ...]:
    """The parts of a config that decide which stage objects a run builds (see ``_stages.build``)."""
    from masquerade.config import matches_people

    return (config.detect, config.swap, config.enhance, config.runtime, config.recognizer,
            matches_people(config))


def _share(batch: list[FrameContext], indices: list[int], stage: str, start: float) -> None:
    """Spread one batched call's time evenly over the frames it served."""
    share = (time.perf_counter() - start) / len(indices)
    for i in indices:
        batch[i].timings[stage] = batch[i].timings.get(stage, 0.0) + share


def _add(ctx: FrameContext, stage: str, start: float) -> None:
    ctx.timings[stage] = ctx.timings.get(stage, 0.0) + time.perf_counter() - start
