"""File-level API: ``swap``, ``enhance`` and ``find_people`` on files. The CLI is a thin layer over this."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from masquerade._version import __version__
from masquerade.config import (
    NO_SWAP,
    EncodeOptions,
    EnhanceOptions,
    LimitOptions,
    MapEntry,
    RunConfig,
    SelectOptions,
    SwapOptions,
    TargetKind,
    config_for_kind,
    validate,
)
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.media.options import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from masquerade.people import People
from masquerade.pipeline import FrameBatchStep, Pipeline, PreparedSource, SourceMap
from masquerade.provenance.plain_tags import EditSummary, LabelAction
from masquerade.types import FrameContext, Image

if TYPE_CHECKING:
    from masquerade.media.image import LoadedImage
    from masquerade.media.reader import VideoReader
    from masquerade.media.writer import VideoWriter
    from masquerade.provenance.keys import SigningIdentity

PathLike = Path | str
SourceMapping = Mapping[PathLike, PathLike | Sequence[PathLike]]
"""``{reference image: source photo(s)}``: the faces of each reference's person get that source."""


@dataclass
class RunSummary:
    output: Path
    kind: str
    frames: int = 0
    faces_swapped: int = 0
    """Faces replaced (in an enhance-only run: faces enhanced)."""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    action: str = "swap"
    """``swap``, or ``enhance`` for an enhance-only run."""

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class RunHooks:
    """Named hooks a caller (progress bar, UI) can override; the library itself never prints."""

    def on_start(self, kind: str, total_frames: int | None) -> None:
        """Called once the target is open."""

    def on_notice(self, message: str) -> None:
        """A message the user must see before the run starts (e.g. a model's licence terms)."""

    def on_frame(self, frame: FrameContext) -> None:
        """Called after each frame is written."""

    def on_end(self, summary: RunSummary) -> None:
        """Called when the output is in place."""


def check_request(sources: Sequence[Path], target: Path, output: Path,
                  limits: LimitOptions | None = None, *, need_source: bool = True) -> str:
    """Validate paths before any work; return the target kind ("image" or "video")."""
    from masquerade.media.probe import probe_kind

    if need_source and not sources:
        raise UsageError("give at least one source image")
    if output.resolve() == target.resolve():
        raise UsageError(f"the output must not overwrite the target ({target})")
    for source in sources:
        if output.resolve() == source.resolve():
            raise UsageError(f"the output must not overwrite a source ({source})")
    kind = probe_kind(target, (limits or LimitOptions()).max_video_pixels)
    allowed = IMAGE_EXTENSIONS if kind == "image" else VIDEO_EXTENSIONS
    if output.suffix.lower() not in allowed:
        raise UsageError(
            f"cannot write {'an image' if kind == 'image' else 'a video'} as "
            f"{output.suffix or 'a file without extension'}; use one of {', '.join(allowed)}"
        )
    if not output.parent.exists():
        raise UsageError(f"the output folder {output.parent} does not exist")
    return kind


def with_mapping(config: RunConfig, mapping: SourceMapping | None) -> RunConfig:
    """``config`` with ``mapping`` (``{reference: source or [sources]}``) added to its ``--map`` entries."""
    if not mapping:
        return config
    entries = list(config.select.mapping)
    for reference, sources in mapping.items():
        paths = (sources,) if isinstance(sources, str | Path) else tuple(sources)
        entries.append(MapEntry(Path(reference), tuple(Path(s) for s in paths)))
    return replace(config, select=replace(config.select, mapping=tuple(entries)))


def swap(
    sources: Sequence[PathLike],
    target: PathLike,
    output: PathLike,
    config: RunConfig | None = None,
    hooks: RunHooks | None = None,
    pipeline: Pipeline | None = None,
    mapping: SourceMapping | None = None,
) -> RunSummary:
    """Put the face from ``sources`` onto the selected faces of ``target``; write ``output``.

    ``mapping`` gives people their own sources: ``{reference image: [source photos]}`` swaps the faces
    of each reference's person with that person's sources (the references may be crops written by
    ``find_people``). ``sources`` may then be empty; if given, they go on the faces ``--faces``
    selects among those no reference claims.

    The output is watermarked and carries a provenance label. It is written to a temporary file
    beside ``output`` and renamed only when complete. Everything that can be checked before the work
    is checked first: the options (:func:`masquerade.config.validate`), the execution provider, the
    files' sizes against ``config.limits`` and the signing key.
    """
    config = with_mapping(config or RunConfig(), mapping)
    if config.swap.swapper == NO_SWAP:
        raise UsageError("swap needs a swapper; to only enhance faces, use enhance()")
    source_paths = [Path(s) for s in sources]
    target_path, output_path = Path(target), Path(output)
    check_output(config, source_paths, target_path, output_path)
    job = Job.prepare(config, source_paths, hooks, pipeline)
    return job.run(target_path, output_path)


def enhance(
    target: PathLike,
    output: PathLike,
    config: RunConfig | None = None,
    hooks: RunHooks | None = None,
    pipeline: Pipeline | None = None,
) -> RunSummary:
    """Restore the selected faces of ``target`` with ``config.enhance.enhancer`` and swap nothing.

    The result is still machine-altered: it is checked by the content guard, watermarked and labelled
    (the label says the faces were enhanced, not swapped). ``--faces`` defaults to every face here.
    """
    config = enhance_config(config)
    target_path, output_path = Path(target), Path(output)
    check_output(config, [], target_path, output_path)
    job = Job.prepare(config, [], hooks, pipeline)
    return job.run(target_path, output_path)


@dataclass(frozen=True)
class CheckedOutput:
    """One target and its output, checked before any work (:func:`check_output`)."""

    kind: TargetKind
    config: RunConfig
    """The run's options for this target (in a batch: the other kind of target's left at defaults)."""
    identity: SigningIdentity | None
    """The key that will sign the output's label."""


def check_output(config: RunConfig, sources: Sequence[Path], target: Path, output: Path, *,
                 in_batch: bool = False) -> CheckedOutput:
    """What can be checked about one target and its output before any model loads: the paths, the
    options for this kind of target, and the key that will sign the output. ``in_batch``: the video
    options are for the batch's videos and the image quality for its images, so the other kind's
    are left at their defaults for this target instead of refused."""
    from masquerade.provenance.c2pa_label import label_identity

    kind: TargetKind = check_request(list(sources), target, output, config.limits,  # type: ignore[assignment]
                                     need_source=False)
    if in_batch:
        config = config_for_kind(config, kind)
    validate(config, kind)
    _check_output_settings(config, kind, target)
    return CheckedOutput(kind, config, label_identity(output))


def _check_output_settings(config: RunConfig, kind: str, target: Path) -> None:
    """Refuse, before any work, a video quality the watermark would not survive at the target's frame
    size (``UsageError``; the image quality's range is checked with the other options)."""
    from masquerade.media.options import video_quality
    from masquerade.media.probe import open_input, video_stream

    encode = config.encode
    if kind == "video" and encode.video_quality is not None:
        with open_input(target) as container:
            stream = video_stream(container)
            if stream is not None:
                context = stream.codec_context
                video_quality(encode.video_encoder, encode.video_quality, context.width, context.height,
                              encode.video_preset)


def enhance_config(config: RunConfig | None) -> RunConfig:
    """``config`` for an enhance-only run: no swapper (and every face, unless another choice was made)."""
    config = config or RunConfig()
    select = config.select
    if select.mode == "reference" and select.reference is None and select.reference_frame is None:
        select = replace(select, mode="all")
    return replace(config, select=select, swap=replace(config.swap, swapper=NO_SWAP))


@dataclass(frozen=True)
class SourcePhotos:
    """A run's photos, read within the image limit before any model loads: what a ``Job`` is prepared
    from (plain arrays, so a cluster ships them to workers that do not have the files)."""

    sources: tuple[tuple[str, Image], ...] = ()
    """``-s``: (label, picture) of each source photo."""
    mapped: tuple[tuple[tuple[str, Image], tuple[tuple[str, Image], ...]], ...] = ()
    """``--map``: ((label, reference picture), that person's source photos), per entry."""
    reference: tuple[str, Image] | None = None
    """``--reference``, when the run matches faces against one."""
    paths: tuple[Path, ...] = ()
    """Every photo's file: an output must not overwrite one."""

    @classmethod
    def read(cls, config: RunConfig, sources: Sequence[Path]) -> SourcePhotos:
        from masquerade.media.image import read_image

        max_pixels = config.limits.max_image_pixels
        mapping = config.select.mapping
        return cls(
            sources=tuple((str(p), read_image(p, max_pixels).image) for p in sources),
            mapped=tuple(((str(e.reference), read_image(e.reference, max_pixels).image),
                          tuple((str(p), read_image(p, max_pixels).image) for p in e.sources))
                         for e in mapping),
            reference=_reference_image(config),
            paths=(*sources, *(e.reference for e in mapping), *(p for e in mapping for p in e.sources)),
        )


@dataclass(frozen=True)
class Identities:
    """Whom a run's faces are matched against, decided once: ``--reference``'s embedding and each
    ``--map`` reference's (a cluster run has one worker decide them, and ships them to the others)."""

    reference: np.ndarray | None = None
    mapped: tuple[np.ndarray, ...] = ()


@dataclass
class Job:
    """Sources prepared once (options checked, photos read and checked, models loaded) for one target
    or many."""

    pipeline: Pipeline
    sources: SourceMap
    source_paths: tuple[Path, ...]
    hooks: RunHooks
    warnings: tuple[str, ...] = ()
    """About the sources, repeated in each target's summary."""
    reference: np.ndarray | None = None
    """``--reference``'s embedding (None without one)."""

    @classmethod
    def prepare(cls, config: RunConfig, sources: Sequence[Path], hooks: RunHooks | None = None,
                pipeline: Pipeline | None = None) -> Job:
        from masquerade._stages.build import check_provider_installed

        cls.check(config, sources)
        check_provider_installed(config.runtime.execution_provider)
        # Read every photo before loading any model, so a bad file fails fast.
        return cls.from_photos(config, SourcePhotos.read(config, sources), hooks, pipeline)

    @staticmethod
    def check(config: RunConfig, sources: Sequence[Path]) -> None:
        """The run's options, and whether it has the sources its action needs."""
        validate(config)
        enhance_only = config.swap.swapper == NO_SWAP
        if enhance_only and sources:
            raise UsageError("enhancing only takes no source photo")
        if not enhance_only and not sources and not config.select.mapping:
            raise UsageError("give a source image (-s) or --map REFERENCE=SOURCE")

    @classmethod
    def from_photos(cls, config: RunConfig, photos: SourcePhotos, hooks: RunHooks | None = None,
                    pipeline: Pipeline | None = None, identities: Identities | None = None) -> Job:
        """The job for photos already read. ``identities``: decided already (see ``Identities``), else
        found in the photos."""
        hooks = hooks or RunHooks()
        if pipeline is not None and pipeline.config != config:
            pipeline = pipeline.reconfigured(config)  # the caller's models, this run's options
        pipeline = pipeline or Pipeline(config, on_notice=hooks.on_notice)
        for notice in pipeline.notices:
            hooks.on_notice(notice)
        mapped = identities.mapped if identities is not None else None
        prepared = (SourceMap() if config.swap.swapper == NO_SWAP
                    else pipeline.prepare_map(photos.sources, photos.mapped, mapped))
        warnings = different_people(pipeline, photos.sources, prepared.default) if prepared.default else []
        for person in prepared.people:
            pairs = [pair for (label, _), pairs in photos.mapped if label == person.label for pair in pairs]
            warnings += different_people(pipeline, pairs, person.source)
        reference = identities.reference if identities is not None else _reference(pipeline, photos.reference)
        return cls(pipeline, prepared, photos.paths, hooks, tuple(warnings), reference)

    @property
    def identities(self) -> Identities:
        return Identities(self.reference, tuple(person.reference for person in self.sources.people))

    @property
    def action(self) -> LabelAction:
        return "enhance" if self.pipeline.config.swap.swapper == NO_SWAP else "swap"

    def run(self, target: Path, output: Path) -> RunSummary:
        """Process one target into ``output``."""
        checked = check_output(self.pipeline.config, self.source_paths, target, output, in_batch=True)
        config = checked.config
        still = read_still(target, config) if checked.kind == "image" else None
        started = time.perf_counter()
        frame = reference_frame(target, checked.kind, still.image if still is not None else None, config)
        reference = self.reference if frame is None else self.frame_reference(*frame)
        summary = RunSummary(output=output, kind=checked.kind, action=self.action,
                             warnings=list(self.warnings))
        if still is not None:
            self.hooks.on_start("image", 1)
            image, swapped = self.swap_still(still.image, still.grey, reference)
            write_still(output, image, still.alpha, swapped, config.encode, checked.identity, self.action)
            summary.frames, summary.faces_swapped = 1, swapped
        else:
            self._video(reference, target, output, summary, checked.identity, config.encode)
        summary.seconds = time.perf_counter() - started
        if summary.faces_swapped == 0:
            summary.warnings.append(no_face_warning(target))
        self.hooks.on_end(summary)
        return summary

    def frame_reference(self, image: Image, where: str) -> np.ndarray:
        """The embedding of face ``--face-index`` (from the left) of ``image``, the ``--reference-frame``
        named by ``where``."""
        pipeline = self.pipeline
        faces = pipeline.faces_from_left(image)
        if not faces:
            raise NoSourceFaceError(f"no face found in {where} (--reference-frame)")
        index = pipeline.config.select.face_index
        if index >= len(faces):
            raise UsageError(f"{where} has {len(faces)} face(s); --face-index {index} is past the last "
                             "(faces count from the left, from 0)")
        return pipeline.face_embedding(image, faces[index])

    def swap_still(self, image: Image, grey: bool, reference: np.ndarray | None) -> tuple[Image, int]:
        """One still picture swapped (or enhanced) and watermarked, and the number of faces changed."""
        selector = self.pipeline.new_selector(reference)
        image, swapped = self.pipeline.swap_image(image, self.sources, selector)
        if grey:  # a colour source face must not tint a black-and-white picture
            image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        return image, swapped

    def _video(self, reference: np.ndarray | None, target: Path, output: Path, summary: RunSummary,
               identity: SigningIdentity | None, encode: EncodeOptions) -> None:
        from masquerade.media.reader import VideoReader
        from masquerade.media.writer import VideoWriter

        limits = self.pipeline.config.limits
        with VideoReader(target, encode.trim_start, encode.trim_end, limits.max_video_pixels) as reader:
            self.hooks.on_start("video", reader.info.frame_count)
            stages = self.pipeline.video_stages(self.sources, fps_of(reader), reference)
            with VideoWriter(output, reader, encode, identity, self.action) as writer:
                self.encode_frames(reader.frames(), stages, writer, summary)
            if reader.retimed_frames:
                summary.warnings.append(
                    f"{reader.retimed_frames} frame(s) of {target} repeat or go back in time; they were "
                    "moved to play in order (by one clock tick for a repeat)")

    def encode_frames(self, frames: Iterable[FrameContext], stages: tuple[FrameBatchStep, FrameBatchStep],
                      writer: VideoWriter, summary: RunSummary) -> None:
        """Analyse, render and write ``frames`` on the threaded engine, adding them up in ``summary``."""
        from masquerade.engine import StreamEngine

        analyse, render = stages
        pipeline = self.pipeline

        def consume(ctx: FrameContext) -> None:
            writer.write(ctx)
            summary.frames += 1
            summary.faces_swapped += ctx.swapped
            for stage, seconds in ctx.timings.items():
                summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
            self.hooks.on_frame(ctx)

        StreamEngine(depth=4).run_batches(frames, analyse, consume, pipeline.frame_batch(), finish=render,
                                          workers=pipeline.frame_workers(), begins=pipeline.batch_starts())


def read_still(target: Path, config: RunConfig) -> LoadedImage:
    """An image target, read within the image limit; an animated one is refused."""
    from masquerade.media.image import read_image

    still = read_image(target, config.limits.max_image_pixels)
    if still.frames > 1:
        raise UsageError(
            f"{target} is an animated {still.format.upper()} ({still.frames} frames); masquerade writes "
            "still images and would keep only the first frame: convert it to a video (e.g. .mp4) and "
            "swap that"
        )
    return still


def write_still(output: Path, image: Image, alpha: np.ndarray | None, swapped: int, encode: EncodeOptions,
                identity: SigningIdentity | None, action: LabelAction) -> None:
    """A finished picture into ``output``, labelled with what was done to it, atomically."""
    from masquerade.media.atomic import atomic_output
    from masquerade.media.image import encode_image, write_bytes
    from masquerade.provenance.c2pa_label import label_file

    data = encode_image(output.suffix.lower(), image, alpha, quality=encode.image_quality)
    with atomic_output(output) as temp:
        write_bytes(temp, data, output)
        edit = EditSummary(faces_replaced=swapped, frames=1, frames_changed=int(swapped > 0), action=action)
        label_file(temp, version=__version__, kind="image", edit=edit, identity=identity)


def reference_frame(target: Path, kind: str, still: Image | None,
                    config: RunConfig) -> tuple[Image, str] | None:
    """``--reference-frame``'s picture of ``target`` and words naming it; None without the option."""
    select = config.select
    if select.reference_frame is None:
        return None
    if kind == "image" and select.reference_frame != 0:
        raise UsageError(f"{target} is an image: its only frame is 0, not {select.reference_frame} "
                         "(--reference-frame)")
    image = still if still is not None else target_frame(target, select.reference_frame, config)
    return image, f"frame {select.reference_frame} of {target}"


def no_face_warning(target: Path) -> str:
    return f"no matching face in {target}: the output shows the target unchanged (watermarked)"


def fps_of(reader: VideoReader) -> float:
    """The rate tracking and the guard's sampling count in (25 when the file does not say)."""
    return float(reader.info.fps) if reader.info.fps else 25.0


DIFFERENT_PEOPLE_MARGIN = 1.2
"""Source photos whose faces are further apart than this times the recognizer's match threshold are
"clearly" different people (dlib: above 0.50; the same person measures 0.23-0.30 on the bundled photos,
different people 0.57-0.62)."""


def different_people(pipeline: Pipeline, sources: Sequence[tuple[str, Image]], prepared: Any) -> list[str]:
    """A warning naming the source photos whose face is clearly another person's than the first one's
    (several photos are taken as one person: different people would be blended or one picked)."""
    if len(sources) < 2:
        return []
    recognizer = pipeline._stages.recognizer
    if recognizer is None:
        from masquerade._stages.recognize import DlibRecognizer

        recognizer = DlibRecognizer()
    pairs = zip(sources, prepared.faces, strict=True)
    embeddings = [recognizer.embed(image, face) for (_, image), face in pairs]
    limit = recognizer.default_threshold * DIFFERENT_PEOPLE_MARGIN
    first = sources[0][0]
    distances = [recognizer.distance(embeddings[0], e) for e in embeddings[1:]]
    odd = [f"{label} (distance {d:.2f})" for (label, _), d in zip(sources[1:], distances, strict=True)
           if d > limit]
    if not odd:
        return []
    return [f"the source photos do not all show the same person: {', '.join(odd)} differ from {first} (the "
            f"same person measures below {recognizer.default_threshold:.2f}); several photos are used as one "
            "person, so the swapped face will not look like either"]


def swap_image(
    sources: Sequence[Image], target: Image, config: RunConfig | None = None
) -> tuple[Image, int]:
    """Numpy in, numpy out: swap the face of ``sources`` (BGR uint8) into ``target``.

    Returns the watermarked result and the number of faces swapped. For many images, build one
    ``Pipeline`` and call ``prepare_source`` once and ``swap_image`` per image instead.
    """
    config = config or RunConfig()
    pipeline = Pipeline(config)
    prepared: PreparedSource = pipeline.prepare_source(
        [(f"source {i + 1}", image) for i, image in enumerate(sources)])
    return pipeline.swap_image(target, prepared, pipeline.new_selector(_reference(pipeline)))


def find_people(target: PathLike, config: RunConfig | None = None, hooks: RunHooks | None = None) -> People:
    """The distinct people in an image or a whole video (``masquerade faces``).

    Every face is tracked; each track's best frames are embedded and averaged; the tracks are then
    clustered (average linkage at the recognizer's threshold, or ``config.select.similarity``; no
    fixed number of people). Ids ``p1``, ``p2``, ... follow screen time and are the same for the same
    target and settings. Each person's ``crop`` can serve as a reference for ``swap(mapping=...)``.
    """
    from masquerade.media.image import read_image
    from masquerade.media.probe import probe_kind

    config = config or RunConfig()
    # Only the analysis stages matter here (the recognizer always runs): swapping and enhancing options
    # keep their defaults.
    config = replace(config, select=SelectOptions(similarity=config.select.similarity),
                     swap=SwapOptions(), enhance=EnhanceOptions())
    hooks = hooks or RunHooks()
    path = Path(target)
    kind = probe_kind(path, config.limits.max_video_pixels)
    validate(config, kind)
    if kind == "image":
        image = read_image(path, config.limits.max_image_pixels).image
    pipeline = Pipeline(config, on_notice=hooks.on_notice)
    for notice in pipeline.notices:
        hooks.on_notice(notice)
    if kind == "image":
        hooks.on_start("image", 1)
        return pipeline.find_people_in_image(image, path)
    from masquerade.media.reader import VideoReader

    encode = config.encode
    with VideoReader(path, encode.trim_start, encode.trim_end, config.limits.max_video_pixels) as reader:
        hooks.on_start("video", reader.info.frame_count)
        return pipeline.find_people(reader.frames(), fps_of(reader), path, on_frame=hooks.on_frame)


def _reference_image(config: RunConfig) -> tuple[str, Image] | None:
    """``--reference``, read (within the image limit), when the run matches faces against one."""
    from masquerade.media.image import read_image

    select = config.select
    if select.mode != "reference" or select.reference is None:
        return None
    path = Path(select.reference)
    return str(path), read_image(path, config.limits.max_image_pixels).image


def _reference(pipeline: Pipeline, image: tuple[str, Image] | None = None) -> np.ndarray | None:
    """Embedding of ``--reference`` (``image``: already read) when the run matches against one, else None."""
    image = image or _reference_image(pipeline.config)
    return None if image is None else pipeline.reference_embedding(*image)


def target_frame(target: Path, index: int, config: RunConfig | None = None) -> Image:
    """Frame ``index`` (0-based, from the file's first frame, whatever the trim) of a video."""
    from masquerade.media.reader import VideoReader

    limits = (config or RunConfig()).limits
    with VideoReader(target, max_pixels=limits.max_video_pixels) as reader:
        count = 0
        for ctx in reader.frames():
            if ctx.index == index:
                return ctx.image
            count += 1
    raise UsageError(f"{target} has {count} frames; frame {index} is past the end (--reference-frame)")
