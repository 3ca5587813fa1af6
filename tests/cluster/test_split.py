"""A run split into segments, without a cluster: the plan, the cut, the warm-up, the join."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from segment_clips import LOSSLESS_ALL, Positions, Run, clip_psnr, decoded, duration, make_gop_clip, packets

from masquerade.api import Job, SourcePhotos
from masquerade.config import EncodeOptions, RunConfig
from masquerade.errors import UsageError
from masquerade.media.reader import VideoReader
from masquerade.media.segments import SegmentWriter, cut_segment, join_segments, plan_segments
from masquerade.media.writer import VideoWriter
from masquerade.pipeline import Pipeline
from masquerade.provenance.c2pa_label import read_label
from masquerade.provenance.plain_tags import EditSummary
from masquerade.split import Person, decide_person, plan_video, swap_segment
from masquerade.types import FrameContext

LOSSLESS = EncodeOptions(video_quality=0)


def test_segments_start_at_key_frames_and_warm_up_before(gop_clip):
    plan = plan_segments(gop_clip, 0.8, 0.4)
    assert plan.frames == 60 and plan.output_shift == 0 and plan.fps == 25
    assert [(s.first, s.count, s.warmup) for s in plan.segments] == [(0, 20, 0), (20, 20, 10), (40, 20, 10)]
    tick = 512  # pts per frame at 25 fps in 1/12800
    assert [(s.start_pts, s.output_pts, s.end_pts) for s in plan.segments] == [
        (0, 0, 20 * tick), (10 * tick, 20 * tick, 40 * tick), (30 * tick, 40 * tick, 60 * tick)]
    # Longer segments take whole groups of pictures; a key frame too early is skipped.
    assert [(s.first, s.count) for s in plan_segments(gop_clip, 1.2, 1.0).segments] == [(0, 40), (40, 20)]
    assert len(plan_segments(gop_clip, 60.0, 1.0).segments) == 1
    # Trimmed: the first segment starts at the trim (decoded from the key frame before it); the key
    # frame 0.28 s later is too early for a 0.8 s segment, and warm-ups stay inside the trim.
    trimmed = plan_segments(gop_clip, 0.8, 1.0, trim_start=0.5, trim_end=2.0)
    assert trimmed.frames == 37 and trimmed.output_shift == 13 * tick  # frames 13 .. 49
    assert [(s.first, s.count, s.warmup) for s in trimmed.segments] == [(0, 27, 0), (27, 10, 25)]
    assert trimmed.segments[1].start_pts == 15 * tick and trimmed.end_pts == 50 * tick
    assert [(s.first, s.warmup) for s in plan_segments(gop_clip, 0.2, 1.0, 0.5, 2.0).segments] == [
        (0, 0), (7, 7), (27, 25)]
    with pytest.raises(UsageError):
        plan_segments(gop_clip, 0.0, 1.0)


def test_a_cut_segment_reads_as_the_whole_video_does(gop_clip, tmp_path):
    plan = plan_segments(gop_clip, 0.8, 0.4)
    with VideoReader(gop_clip) as reader:
        whole = list(reader.frames())
    for segment in plan.segments:
        chunk = cut_segment(gop_clip, segment, tmp_path)
        assert chunk.stat().st_size < gop_clip.stat().st_size
        with VideoReader(chunk, window=plan.window(segment)) as reader:
            frames = list(reader.frames())
            assert reader.info.fps == 25
        first = segment.first - segment.warmup
        assert [f.index for f in frames] == list(range(first, segment.first + segment.count))
        for frame in frames:
            assert frame.pts == whole[frame.index].pts
            assert np.array_equal(frame.image, whole[frame.index].image)


def _encode_split(source: Path, folder: Path, suffix: str, encode: EncodeOptions) -> tuple[Path, Path]:
    """The source re-encoded unchanged, once whole and once in segments joined: (single, joined)."""
    single = folder / f"single{suffix}"
    with VideoReader(source, encode.trim_start, encode.trim_end) as reader, \
            VideoWriter(single, reader, encode) as writer:
        for frame in reader.frames():
            writer.write(frame)
    plan = plan_segments(source, 0.8, 0.4, encode.trim_start, encode.trim_end)
    files = []
    for segment in plan.segments:
        out = folder / f"part{segment.number}{suffix}"
        chunk = cut_segment(source, segment, folder)
        with VideoReader(chunk, window=plan.window(segment)) as reader, \
                SegmentWriter(out, reader, replace(encode, skip_audio=True)) as writer:
            for frame in reader.frames():
                if frame.index >= segment.first:
                    writer.write(frame)
        files.append(out)
    joined = folder / f"joined{suffix}"
    edit = EditSummary(faces_replaced=0, frames=plan.frames)  # nothing changed: the label says so
    assert join_segments(source, files, joined, encode, edit) == plan.frames
    return single, joined


@pytest.mark.parametrize(("suffix", "encode"), [
    (".mp4", LOSSLESS),
    (".mkv", replace(LOSSLESS, trim_start=0.5, trim_end=2.0)),
])
def test_joined_segments_are_the_single_run(gop_clip, tmp_path, suffix, encode):
    single, joined = _encode_split(gop_clip, tmp_path, suffix, encode)
    (pts_a, frames_a), (pts_b, frames_b) = decoded(single), decoded(joined)
    assert pts_b == pts_a and len(pts_a) == (60 if encode.trim_start is None else 37)
    assert all(np.array_equal(a, b) for a, b in zip(frames_a, frames_b, strict=True))
    assert packets(joined, "audio") == packets(single, "audio") and packets(single, "audio")
    if suffix == ".mp4":
        assert duration(joined) == duration(single) == 2.4
    assert read_label(joined).claims == read_label(single).claims  # signed once, claiming what happened


def test_a_rotated_clip_joins_upright(examples_dir, tmp_path):
    clip = make_gop_clip(examples_dir / "sample.mp4", tmp_path / "rotated.mp4", seconds=1.6, size=(96, 64),
                         gop=20, rotation=90)
    single, joined = _encode_split(clip, tmp_path, ".mp4", LOSSLESS)
    with VideoReader(joined) as a, VideoReader(single) as b:
        assert a.orientation == b.orientation != "none"
        assert (a.info.width, a.info.height) == (b.info.width, b.info.height) == (64, 96)


def test_a_segment_after_its_warm_up_matches_the_single_run(gop_clip, tmp_path, examples_dir,
                                                            lossless_pipeline, single_run):
    """Lossless, so only the pipeline can differ. The last segment's warm-up starts after the video's
    start (a tracker starting afresh, as on another machine): tracking and smoothing have caught up
    with the single run's by the segment's first frame, so the face sits where the single run put it."""
    run = Run(tmp_path / "part.mp4", None)  # type: ignore[arg-type]
    photos = SourcePhotos.read(LOSSLESS_ALL, [examples_dir / "astronaut.png"])
    job = Job.from_photos(LOSSLESS_ALL, photos, Positions(run), lossless_pipeline)
    plan = plan_video(gop_clip, LOSSLESS_ALL, 0.8, 1.0)
    last = plan.segments[-1]
    assert (last.first, last.warmup) == (40, 25)
    result = swap_segment(job, Person(None), cut_segment(gop_clip, last, tmp_path), plan, last, run.output)
    assert (result.frames, result.warmup_frames, result.faces_swapped) == (20, 25, 20)
    assert result.frames_changed == 20
    (pts_a, a), (pts_b, b) = decoded(single_run.output), decoded(run.output)
    assert pts_b == pts_a[40:]
    assert clip_psnr(a[40:], b) >= 50
    gaps = [np.linalg.norm(run.centres[i] - single_run.centres[i]) for i in last.frames]
    assert max(gaps) < 0.05, gaps


def test_warm_up_frames_are_tracked_not_guarded_or_rendered(lossless_pipeline, astronaut, gop_clip):
    pipeline = lossless_pipeline
    source = pipeline.prepare_source([("astronaut", astronaut)])
    analyse, render = pipeline.video_stages(source, 25.0, None, output_from=10)
    with VideoReader(gop_clip) as reader:
        frames = [f for f, _ in zip(reader.frames(), range(12), strict=False)]
    checked = [pipeline.guard.views_checked]
    for frame in frames:
        analyse([frame])
        checked.append(pipeline.guard.views_checked)
    looked = np.diff(checked)
    assert not looked[:10].any() and looked[10] > 0 and looked[11] == 0  # frame 10 is a first frame
    assert all(f.faces and f.selected for f in frames)  # the warm-up was tracked and selected
    with pytest.raises(UsageError, match="analyse returned"):
        render(frames[9:10])  # a warm-up frame has no ticket: it can never be rendered
    assert [f.swapped for f in render(frames[10:])] == [1, 1]


def test_the_person_is_the_first_tracked_face_of_the_video(gop_clip, examples_dir):
    config = RunConfig()  # --faces reference without a reference
    pipeline = Pipeline(config)
    photos = SourcePhotos.read(config, [examples_dir / "astronaut.png"])
    job = Job.from_photos(config, photos, pipeline=pipeline)
    with VideoReader(gop_clip) as reader:
        frames = reader.frames()
        first = next(frames)
        person = decide_person(job, [first, *frames], 25.0)
    assert person is not None and person.found
    selector = pipeline.new_selector(None)
    selector(first.image, pipeline.detect_faces(first.image))
    assert np.allclose(person.reference, selector.reference, atol=1e-5)
    blank = FrameContext(index=0, image=np.zeros((120, 160, 3), np.uint8))
    assert decide_person(job, [blank], 25.0) is None  # read on: the video may go on
