"""File-level API: ``swap``, ``enhance`` and ``find_people`` on files. The CLI is a thin layer over this."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from masquerade._version import __version__
from masquerade.config import NO_SWAP, MapEntry, RunConfig, SelectOptions, check_selection
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.media.options import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from masquerade.people import People
from masquerade.pipeline import Pipeline, SourceMap
from masquerade.types import FrameContext, Image

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


def check_request(sources: Sequence[Path], target: Path, output: Path, *, need_source: bool = True) -> str:
    """Validate paths before any work; return the target kind ("image" or "video")."""
    from masquerade.media.probe import probe_kind

    if need_source and not sources:
        raise UsageError("give at least one source image")
    if output.resolve() == target.resolve():
        raise UsageError(f"the output must not overwrite the target ({target})")
    for source in sources:
        if output.resolve() == source.resolve():
            raise UsageError(f"the output must not overwrite a source ({source})")
    kind = probe_kind(target)
    allowed = IMAGE_EXTENSIONS if kind == "image" else VIDEO_EXTENSIONS
    if output.suffix.lower() not in allowed:
        raise UsageError(
            f"cannot write a {kind} as {output.suffix or 'a file without extension'}; "
            f"use one of {', '.join(allowed)}"
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
    selects among those no reference claims. The output is watermarked and carries a provenance label.
    It is written to a temporary file beside ``output`` and renamed only when complete.
    """
    config = with_mapping(config or RunConfig(), mapping)
    if config.swap.swapper == NO_SWAP:
        raise UsageError("swap needs a swapper; to only enhance faces, use enhance()")
    source_paths = [Path(s) for s in sources]
    check_request(source_paths, Path(target), Path(output), need_source=False)  # before loading models
    job = Job.prepare(config, source_paths, hooks, pipeline)
    return job.run(Path(target), Path(output))


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
    check_request([], Path(target), Path(output), need_source=False)  # before loading models
    job = Job.prepare(enhance_config(config), [], hooks, pipeline)
    return job.run(Path(target), Path(output))


def enhance_config(config: RunConfig | None) -> RunConfig:
    """``config`` for an enhance-only run: no swapper (and every face, unless another choice was made)."""
    config = config or RunConfig()
    select = config.select
    if select.mode == "reference" and select.reference is None and select.reference_frame is None:
        select = replace(select, mode="all")
    return replace(config, select=select, swap=replace(config.swap, swapper=NO_SWAP))


@dataclass
class Job:
    """Sources prepared once (models loaded, photos checked) for one or many targets."""

    pipeline: Pipeline
    sources: SourceMap
    source_paths: tuple[Path, ...]
    hooks: RunHooks

    @classmethod
    def prepare(cls, config: RunConfig, sources: Sequence[Path], hooks: RunHooks | None = None,
                pipeline: Pipeline | None = None) -> Job:
        from masquerade.media.image import read_image

        check_selection(config)
        hooks = hooks or RunHooks()
        mapping = config.select.mapping
        enhance_only = config.swap.swapper == NO_SWAP
        if enhance_only and sources:
            raise UsageError("an enhance-only run takes no source photo")
        if not enhance_only and not sources and not mapping:
            raise UsageError("give at least one source image (-s) or --map REFERENCE=SOURCE")
        # Read every photo before loading any model, so an unreadable one fails fast.
        source_images = [(str(p), read_image(p).image) for p in sources]
        mapped = [((str(e.reference), read_image(e.reference).image),
                   [(str(p), read_image(p).image) for p in e.sources]) for e in mapping]
        pipeline = pipeline or Pipeline(config, on_notice=hooks.on_notice)
        for notice in pipeline.stages.notices:
            hooks.on_notice(notice)
        prepared = SourceMap() if enhance_only else pipeline.prepare_map(source_images, mapped)
        paths = (*sources, *(e.reference for e in mapping), *(p for e in mapping for p in e.sources))
        return cls(pipeline, prepared, tuple(paths), hooks)

    @property
    def action(self) -> str:
        return "enhance" if self.pipeline.config.swap.swapper == NO_SWAP else "swap"

    def run(self, target: Path, output: Path) -> RunSummary:
        """Process one target into ``output``."""
        kind = check_request(list(self.source_paths), target, output, need_source=False)
        started = time.perf_counter()
        reference = _reference(self.pipeline, target, kind)
        summary = RunSummary(output=output, kind=kind, action=self.action)
        if kind == "image":
            self._image(reference, target, output, summary)
        else:
            self._video(reference, target, output, summary)
        summary.seconds = time.perf_counter() - started
        if summary.faces_swapped == 0:
            summary.warnings.append(
                f"no matching face in {target}: the output shows the target unchanged (watermarked)"
            )
        self.hooks.on_end(summary)
        return summary

    def _image(self, reference, target: Path, output: Path, summary: RunSummary) -> None:
        from masquerade.media.atomic import atomic_output
        from masquerade.media.image import read_image, write_image
        from masquerade.provenance.c2pa_label import label_file

        self.hooks.on_start("image", 1)
        loaded = read_image(target)
        selector = self.pipeline.new_selector(reference)
        image, swapped = self.pipeline.swap_image(loaded.image, self.sources, selector)
        if loaded.grey:  # a colour source face must not tint a black-and-white picture
            image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        with atomic_output(output) as temp:
            write_image(temp, image, loaded.alpha, quality=self.pipeline.config.encode.image_quality)
            label_file(temp, version=__version__, kind="image", action=self.action)  # type: ignore[arg-type]
        summary.frames, summary.faces_swapped = 1, swapped

    def _video(self, reference, target: Path, output: Path, summary: RunSummary) -> None:
        from masquerade.engine import StreamEngine
        from masquerade.media.reader import VideoReader
        from masquerade.media.writer import VideoWriter

        pipeline, encode = self.pipeline, self.pipeline.config.encode
        with VideoReader(target, encode.trim_start, encode.trim_end) as reader:
            self.hooks.on_start("video", reader.info.frame_count)
            fps = float(reader.info.fps) if reader.info.fps else 25.0
            analyse, render = pipeline.video_stages(self.sources, fps, reference)
            with VideoWriter(output, reader, encode, action=self.action) as writer:  # type: ignore[arg-type]

                def consume(ctx: FrameContext) -> None:
                    writer.write(ctx)
                    summary.frames += 1
                    summary.faces_swapped += ctx.swapped
                    for stage, seconds in ctx.timings.items():
                        summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
                    self.hooks.on_frame(ctx)

                StreamEngine(depth=4).run_batches(reader.frames(), analyse, consume, pipeline.frame_batch(),
                                                  finish=render, workers=pipeline.frame_workers())


def swap_image(
    sources: Sequence[Image], target: Image, config: RunConfig | None = None
) -> tuple[Image, int]:
    """Numpy in, numpy out: swap the face of ``sources`` (BGR uint8) into ``target``.

    Returns the watermarked result and the number of faces swapped. For many images, build one
    ``Pipeline`` and call ``prepare_source`` once and ``swap_image`` per image instead.
    """
    pipeline = Pipeline(config or RunConfig())
    prepared = pipeline.prepare_source([(f"source {i + 1}", image) for i, image in enumerate(sources)])
    return pipeline.swap_image(target, prepared, pipeline.new_selector(_reference(pipeline, None, "image")))


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
    # Only the analysis stages matter here: the recognizer is always needed, no swapper is.
    config = replace(config, select=SelectOptions(similarity=config.select.similarity),
                     swap=replace(config.swap, swapper=NO_SWAP))
    hooks = hooks or RunHooks()
    path = Path(target)
    kind = probe_kind(path)
    pipeline = Pipeline(config, on_notice=hooks.on_notice)
    for notice in pipeline.stages.notices:
        hooks.on_notice(notice)
    if kind == "image":
        hooks.on_start("image", 1)
        return pipeline.find_people_in_image(read_image(path).image, path)
    from masquerade.media.reader import VideoReader

    with VideoReader(path, config.encode.trim_start, config.encode.trim_end) as reader:
        hooks.on_start("video", reader.info.frame_count)
        fps = float(reader.info.fps) if reader.info.fps else 25.0
        return pipeline.find_people(reader.frames(), fps, path, on_frame=hooks.on_frame)


def _reference(pipeline: Pipeline, target: Path | None, kind: str) -> np.ndarray | None:
    """Embedding of the person ``--faces reference`` matches: from ``--reference IMAGE``, from face
    ``--face-index`` of frame ``--reference-frame`` of the target, else None (the first largest face)."""
    from masquerade.media.image import read_image

    select = pipeline.config.select
    if select.reference_frame is not None:
        if target is None:
            raise UsageError("--reference-frame needs a target file")
        image = target_frame(target, kind, select.reference_frame)
        faces = pipeline.detect_faces(image)
        where = f"frame {select.reference_frame} of {target}"
        if not faces:
            raise NoSourceFaceError(f"no face found in {where} (--reference-frame)")
        if select.face_index >= len(faces):
            raise UsageError(f"{where} has {len(faces)} face(s); --face-index {select.face_index} is past "
                             "the last (faces count from the left, from 0)")
        return pipeline.face_embedding(image, faces[select.face_index])
    if select.mode != "reference" or select.reference is None:
        return None
    path = Path(select.reference)
    return pipeline.reference_embedding(str(path), read_image(path).image)


def target_frame(target: Path, kind: str, index: int) -> Image:
    """Frame ``index`` (0-based, from the file's first frame, whatever the trim) of an image or video."""
    from masquerade.media.image import read_image
    from masquerade.media.reader import VideoReader

    if kind == "image":
        if index != 0:
            raise UsageError(f"{target} is an image: its only frame is 0, not {index}")
        return read_image(target).image
    with VideoReader(target) as reader:
        count = 0
        for ctx in reader.frames():
            if ctx.index == index:
                return ctx.image
            count += 1
    raise UsageError(f"{target} has {count} frames; frame {index} is past the end")
