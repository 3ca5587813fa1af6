"""A video run split into segments, each done on its own (by ``masquerade.cluster``, one machine each).

The pieces, in the order a runner uses them:

1. ``plan_video``: where the segments start (the source's key frames, a few seconds apart) and the
   warm-up each one reads before its first frame.
2. ``decide_person``: who ``--faces reference`` swaps when no reference names the person: the first
   face tracking finds from the start, decided once for the whole video so no segment decides
   alone. (The ``--reference`` and ``--map`` people are decided once per run, ``api.Identities``;
   a ``--reference-frame`` person once per video, ``Job.frame_reference``.)
3. ``swap_segment``: one segment, from a small file holding its packets (``cut_segment``): decode,
   track and identify the warm-up without writing it, then guard, swap, watermark and encode the
   segment's own frames with the run's encoder settings, in the whole run's timestamps.
4. ``join_segments``: the encoded segments joined by stream copy with the source's audio, labelled
   once with what all of them did, moved into place atomically.

The content guard and the watermark are the pipeline's own, as in every other run: each segment's
first frame is a first frame for the guard's sampling (then one per second, each scene cut and each
new face to be swapped), and no warm-up frame is ever rendered or written.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from pathlib import Path

import numpy as np

from masquerade.api import Job, RunSummary, fps_of
from masquerade.config import RunConfig, config_for_kind
from masquerade.errors import MediaError
from masquerade.media.segments import (
    Segment,
    SegmentPlan,
    SegmentWriter,
    cut_segment,
    join_segments,
    plan_segments,
)
from masquerade.provenance.plain_tags import EditSummary, LabelAction
from masquerade.types import FrameContext

__all__ = [
    "Person",
    "Segment",
    "SegmentPlan",
    "SegmentResult",
    "cut_segment",
    "decide_person",
    "join_segments",
    "joined_edit",
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
    frames_changed: int = 0
    """Frames in which a face was replaced (or enhanced): the label counts them."""
    warmup_frames: int = 0
    seconds: float = 0.0
    """The whole segment: opening its packets, warm-up, swapping and encoding."""
    warmup_seconds: float = 0.0
    """Decoding up to the segment's first frame and tracking the warm-up."""
    stage_seconds: dict[str, float] = field(default_factory=dict)


def joined_edit(results: Sequence[SegmentResult], action: LabelAction = "swap") -> EditSummary:
    """What a video's segments did together: what its joined output's label says."""
    return EditSummary(faces_replaced=sum(r.faces_swapped for r in results),
                       frames=sum(r.frames for r in results),
                       frames_changed=sum(r.frames_changed for r in results), action=action)


def plan_video(target: Path, config: RunConfig, segment_seconds: float = SEGMENT_SECONDS,
               warmup_seconds: float = WARMUP_SECONDS) -> SegmentPlan:
    """The segments of ``target`` between the run's trims (see ``media.segments.plan_segments``)."""
    encode = config.encode
    return plan_segments(Path(target), segment_seconds, warmup_seconds, encode.trim_start, encode.trim_end)


def decide_person(job: Job, frames: Iterable[FrameContext], fps: float) -> Person | None:
    """Whom a video run swaps when ``--faces reference`` names nobody (neither ``--reference`` nor
    ``--reference-frame``): the largest face in the first frame where tracking from the start finds
    one (``frames``: the video from its first frame). None when ``frames`` ran out before any face:
    read on (the caller knows whether the video goes on, and says ``Person(None, found=False)`` when
    it does not)."""
    embedding = job.pipeline.adopted_reference(job.sources, frames, fps)
    return None if embedding is None else Person(embedding)


def swap_segment(
    job: Job, person: Person, chunk: Path, plan: SegmentPlan, segment: Segment, output: Path,
) -> SegmentResult:
    """Swap ``segment`` from ``chunk`` (its packets, ``cut_segment``) into ``output`` (video only, in
    the output's container, encoded with the run's settings). The warm-up frames are analysed only."""
    from masquerade.media.reader import VideoReader

    started = time.perf_counter()
    result = SegmentResult(segment.number)
    summary = RunSummary(output=Path(output), kind="video")
    config = job.pipeline.config
    encode = replace(config_for_kind(config, "video").encode, skip_audio=True)
    with VideoReader(chunk, max_pixels=config.limits.max_video_pixels, window=plan.window(segment)) as reader:
        analyse, render = job.pipeline.video_stages(job.sources, fps_of(reader), person.reference,
                                                    output_from=segment.first, adopt_reference=person.found)
        frames = reader.frames()
        for ctx in islice(frames, segment.warmup):
            analyse([ctx])
            result.warmup_frames += 1
        result.warmup_seconds = time.perf_counter() - started
        with SegmentWriter(output, reader, encode, action=job.action) as writer:
            job.encode_frames(frames, (analyse, render), writer, summary)
            edit: EditSummary = writer.edit
            planned = (segment.warmup, segment.count)
            if (result.warmup_frames, summary.frames) != planned or reader.retimed_frames:
                raise MediaError(f"segment {segment.number} decoded {result.warmup_frames} + "
                                 f"{summary.frames} frames where the plan counted {segment.warmup} + "
                                 f"{segment.count}, {reader.retimed_frames} of them retimed; this video "
                                 "cannot be split (run it without --cluster)")
    result.frames, result.faces_swapped = summary.frames, summary.faces_swapped
    result.frames_changed = edit.frames_changed
    result.stage_seconds = summary.stage_seconds
    result.seconds = time.perf_counter() - started
    return result
