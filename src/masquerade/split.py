"""A video run split into segments, each done on its own (by ``masquerade.cluster``, one machine each).

The pieces, in the order a runner uses them:

1. ``plan_video``: where the segments start (the source's key frames, a few seconds apart) and the
   warm-up each one reads before its first frame.
2. ``decide_person``: who ``--faces reference`` swaps, decided once for the whole video (from the
   reference image, or the first face tracking finds from the start), so no segment decides alone.
3. ``swap_segment``: one segment, from a small file holding its packets (``cut_segment``): decode,
   track the warm-up without writing it, then guard, swap, watermark and encode the segment's own
   frames with the run's encoder settings, in the whole run's timestamps.
4. ``join_segments``: the encoded segments joined by stream copy with the source's audio, labelled
   once, moved into place atomically.

The content guard and the watermark are the pipeline's own, as in every other run: each segment's
first frame is a first frame for the guard's sampling (then one per second and each scene cut), and
no warm-up frame is ever rendered or written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from masquerade.api import RunHooks, RunSummary, encode_frames, fps_of
from masquerade.config import RunConfig
from masquerade.errors import MediaError
from masquerade.media.segments import (
    Segment,
    SegmentPlan,
    SegmentWriter,
    cut_segment,
    join_segments,
    plan_segments,
)
from masquerade.pipeline import Pipeline, PreparedSource
from masquerade.types import FrameContext, Image

__all__ = [
    "Person",
    "Segment",
    "SegmentPlan",
    "SegmentResult",
    "cut_segment",
    "decide_person",
    "join_segments",
    "plan_video",
    "swap_segment",
]

SEGMENT_SECONDS = 4.0
"""Default shortest segment: long enough that its fixed costs (start, warm-up, join) stay small,
short enough that a few minutes of video keep a few machines busy."""
WARMUP_SECONDS = 1.0
"""Default warm-up. The landmark filter forgets its start within ~0.2 s when still (1 Hz cut-off) and
faster when moving; tracking re-fits every frame; 1 s also covers the reference check's history."""


@dataclass(frozen=True)
class Person:
    """Whom a video run swaps, decided once for all its segments."""

    reference: np.ndarray | None
    """The reference embedding; None when the mode needs none, or when no face was found."""
    found: bool = True
    """False: ``--faces reference`` without a reference image, and no frame of the video has a face."""


@dataclass
class SegmentResult:
    """What one segment's run did."""

    segment: int
    frames: int = 0
    faces_swapped: int = 0
    warmup_frames: int = 0
    seconds: float = 0.0
    """The whole segment: opening its packets, warm-up, swapping and encoding."""
    warmup_seconds: float = 0.0
    """Decoding up to the segment's first frame and tracking the warm-up."""
    stage_seconds: dict[str, float] = field(default_factory=dict)


def plan_video(target: Path, config: RunConfig, segment_seconds: float = SEGMENT_SECONDS,
               warmup_seconds: float = WARMUP_SECONDS) -> SegmentPlan:
    """The segments of ``target`` between the run's trims (see ``media.segments.plan_segments``)."""
    encode = config.encode
    return plan_segments(Path(target), segment_seconds, warmup_seconds, encode.trim_start, encode.trim_end)


def decide_person(
    pipeline: Pipeline, reference_image: tuple[str, Image] | None, frames: Iterable[FrameContext] | None,
    fps: float,
) -> Person | None:
    """Whom the run swaps: the reference image's face; else, with ``--faces reference``, the largest
    face in the first frame where tracking from the start finds one (``frames``: the video from its
    first frame). None when ``frames`` ran out before any face: read on (the caller knows whether
    the video goes on, and says ``Person(None, found=False)`` when it does not)."""
    if pipeline.config.select.mode != "reference":
        return Person(None)
    if reference_image is not None:
        label, image = reference_image
        return Person(pipeline.reference_embedding(label, image))
    if frames is None:
        raise ValueError("without a reference image the person is found in the video's frames")
    embedding = pipeline.adopted_reference(frames, fps)
    return None if embedding is None else Person(embedding)


def swap_segment(
    pipeline: Pipeline, source: PreparedSource, person: Person, chunk: Path, plan: SegmentPlan,
    segment: Segment, output: Path, hooks: RunHooks | None = None,
) -> SegmentResult:
    """Swap ``segment`` from ``chunk`` (its packets, ``cut_segment``) into ``output`` (video only, in
    the output's container, encoded with the run's settings). The warm-up frames are tracked only."""
    from masquerade.media.reader import VideoReader

    started = time.perf_counter()
    hooks = hooks or RunHooks()
    result = SegmentResult(segment.number)
    summary = RunSummary(output=Path(output), kind="video")
    config = pipeline.config
    encode = replace(config.encode, skip_audio=True)
    with VideoReader(chunk, max_pixels=config.limits.max_video_pixels, window=plan.window(segment)) as reader:
        analyse, render = pipeline.video_stages(source, fps_of(reader), person.reference,
                                                output_from=segment.first, adopt_reference=person.found)
        frames = reader.frames()
        for ctx in islice(frames, segment.warmup):
            analyse([ctx])
            result.warmup_frames += 1
        result.warmup_seconds = time.perf_counter() - started
        with SegmentWriter(output, reader, encode) as writer:
            encode_frames(pipeline, frames, (analyse, render), writer, summary, hooks)
            planned = (segment.warmup, segment.count)
            if (result.warmup_frames, summary.frames) != planned or reader.retimed_frames:
                raise MediaError(f"segment {segment.number} decoded {result.warmup_frames} + "
                                 f"{summary.frames} frames where the plan counted {segment.warmup} + "
                                 f"{segment.count}, {reader.retimed_frames} of them retimed; this video "
                                 "cannot be split (run it without --cluster)")
    result.frames, result.faces_swapped = summary.frames, summary.faces_swapped
    result.stage_seconds = summary.stage_seconds
    result.seconds = time.perf_counter() - started
    return result
