"""File-level API: ``swap(sources, target, output, config)``. The CLI is a thin layer over this."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from masquerade._version import __version__
from masquerade.config import LimitOptions, RunConfig, validate
from masquerade.errors import UsageError
from masquerade.media.options import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from masquerade.pipeline import FrameBatchStep, Pipeline, PreparedSource
from masquerade.types import FrameContext, Image

if TYPE_CHECKING:
    from masquerade.media.image import LoadedImage
    from masquerade.media.reader import VideoReader
    from masquerade.media.writer import VideoWriter
    from masquerade.provenance.keys import SigningIdentity


@dataclass
class RunSummary:
    output: Path
    kind: str
    frames: int = 0
    faces_swapped: int = 0
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

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
                  limits: LimitOptions | None = None) -> str:
    """Validate paths before any work; return the target kind ("image" or "video")."""
    from masquerade.media.probe import probe_kind

    if not sources:
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


def swap(
    sources: Sequence[Path | str],
    target: Path | str,
    output: Path | str,
    config: RunConfig | None = None,
    hooks: RunHooks | None = None,
    pipeline: Pipeline | None = None,
) -> RunSummary:
    """Put the face from ``sources`` onto the selected faces of ``target``; write ``output``.

    The output is watermarked and carries a provenance label. It is written to a temporary file
    beside ``output`` and renamed only when complete. Everything that can be checked before the work
    is checked first: the options (:func:`masquerade.config.validate`), the execution provider, the
    files' sizes against ``config.limits`` and the signing key.
    """
    from masquerade._stages.build import check_provider_installed
    from masquerade.media.image import read_image
    from masquerade.provenance.c2pa_label import label_identity

    config = config or RunConfig()
    hooks = hooks or RunHooks()
    source_paths = [Path(s) for s in sources]
    target_path, output_path = Path(target), Path(output)
    kind = check_request(source_paths, target_path, output_path, config.limits)
    validate(config, kind)
    check_provider_installed(config.runtime.execution_provider)
    identity = label_identity(output_path)  # a damaged key is found now, not after the work
    max_pixels = config.limits.max_image_pixels
    # Read every source, the reference and an image target before loading any model: a bad file fails fast.
    source_images = [(str(p), read_image(p, max_pixels).image) for p in source_paths]
    reference_image = reference_photo(config)
    still = read_still(target_path, config) if kind == "image" else None
    pipeline = pipeline or Pipeline(config, on_notice=hooks.on_notice)
    for notice in pipeline.stages.notices:
        hooks.on_notice(notice)
    started = time.perf_counter()
    prepared = pipeline.prepare_source(source_images)
    reference = _reference(pipeline, reference_image)

    summary = RunSummary(output=output_path, kind=kind)
    summary.warnings.extend(different_people(pipeline, source_images, prepared))
    if still is not None:
        _swap_image_file(pipeline, prepared, reference, still, output_path, config, hooks, summary, identity)
    else:
        _swap_video_file(pipeline, prepared, reference, target_path, output_path, config, hooks, summary,
                         identity)
    summary.seconds = time.perf_counter() - started
    if summary.faces_swapped == 0:
        summary.warnings.append(no_face_warning(target_path))
    hooks.on_end(summary)
    return summary


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


DIFFERENT_PEOPLE_MARGIN = 1.2
"""Source photos whose faces are further apart than this times the recognizer's match threshold are
"clearly" different people (dlib: above 0.50; the same person measures 0.23-0.30 on the bundled photos,
different people 0.57-0.62)."""


def different_people(pipeline: Pipeline, sources: Sequence[tuple[str, Image]], prepared: Any) -> list[str]:
    """A warning naming the source photos whose face is clearly another person's than the first one's
    (several photos are taken as one person: different people would be blended or one picked)."""
    if len(sources) < 2:
        return []
    recognizer = pipeline.stages.recognizer
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


def no_face_warning(target: Path) -> str:
    return f"no matching face in {target}: the output shows the target unchanged (watermarked)"


def _swap_image_file(pipeline, prepared, reference, loaded, output, config, hooks, summary, identity) -> None:
    hooks.on_start("image", 1)
    image, swapped = swap_loaded_image(pipeline, prepared, reference, loaded.image, loaded.grey)
    write_image_output(output, image, loaded.alpha, config.encode.image_quality, identity)
    summary.frames, summary.faces_swapped = 1, swapped


def swap_loaded_image(
    pipeline: Pipeline, prepared: PreparedSource, reference: np.ndarray | None, image: Image, grey: bool
) -> tuple[Image, int]:
    """Swap one target picture as read by ``read_image``; return the watermarked result and the count."""
    image, swapped = pipeline.swap_image(image, prepared, pipeline.new_selector(reference))
    if grey:  # a colour source face must not tint a black-and-white picture
        image = cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    return image, swapped


def write_image_output(output: Path, image: Image, alpha: np.ndarray | None, quality: int,
                       identity: SigningIdentity | None = None) -> None:
    """Write a finished picture to ``output``, labelled (with ``identity``, else the user's key),
    atomically."""
    from masquerade.media.atomic import atomic_output
    from masquerade.media.image import encode_image, write_bytes
    from masquerade.provenance.c2pa_label import label_file

    data = encode_image(output.suffix.lower(), image, alpha, quality=quality)
    with atomic_output(output) as temp:
        write_bytes(temp, data, output)
        label_file(temp, version=__version__, kind="image", identity=identity)


def _swap_video_file(pipeline, prepared, reference, target, output, config, hooks, summary, identity) -> None:
    from masquerade.media.reader import VideoReader
    from masquerade.media.writer import VideoWriter

    encode = config.encode
    with VideoReader(target, encode.trim_start, encode.trim_end, config.limits.max_video_pixels) as reader:
        hooks.on_start("video", reader.info.frame_count)
        analyse, render = pipeline.video_stages(prepared, fps_of(reader), reference)
        with VideoWriter(output, reader, encode, identity) as writer:
            encode_frames(pipeline, reader.frames(), (analyse, render), writer, summary, hooks)
        if reader.retimed_frames:
            summary.warnings.append(retimed_warning(target, reader.retimed_frames))


def retimed_warning(target: Path, frames: int) -> str:
    return (f"{frames} frame(s) of {target} repeat or go back in time; they were moved to play in order "
            "(by one clock tick for a repeat)")


def fps_of(reader: VideoReader) -> float:
    """The rate tracking and the guard's sampling count in (25 when the file does not say)."""
    return float(reader.info.fps) if reader.info.fps else 25.0


def encode_frames(
    pipeline: Pipeline, frames: Iterable[FrameContext], stages: tuple[FrameBatchStep, FrameBatchStep],
    writer: VideoWriter, summary: RunSummary, hooks: RunHooks,
) -> None:
    """Analyse, render and write ``frames`` on the threaded engine, adding them up in ``summary``."""
    from masquerade.engine import StreamEngine

    analyse, render = stages

    def consume(ctx: FrameContext) -> None:
        writer.write(ctx)
        summary.frames += 1
        summary.faces_swapped += ctx.swapped
        for stage, seconds in ctx.timings.items():
            summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds
        hooks.on_frame(ctx)

    StreamEngine(depth=4).run_batches(frames, analyse, consume, pipeline.frame_batch(),
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
    return pipeline.swap_image(target, prepared, pipeline.new_selector(_reference(pipeline)))


def reference_photo(config: RunConfig) -> tuple[str, Image] | None:
    """``--reference``, read (within the image limit), when the run matches faces against one."""
    from masquerade.media.image import read_image

    select = config.select
    if select.mode != "reference" or select.reference is None:
        return None
    path = Path(select.reference)
    return str(path), read_image(path, config.limits.max_image_pixels).image


def _reference(pipeline: Pipeline, image: tuple[str, Image] | None = None) -> np.ndarray | None:
    """Embedding of ``--reference`` (``image``: already read) when the run matches against one, else None."""
    image = image or reference_photo(pipeline.config)
    return None if image is None else pipeline.reference_embedding(*image)
