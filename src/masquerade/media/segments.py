"""A video in segments: split at its key frames, cut out by stream copy, joined back by stream copy.

Nothing here decodes a picture. ``plan_segments`` reads the video packets' timestamps and key-frame
flags (PyAV demuxing only) and cuts the run's frames into segments of a few seconds that each start
at a key frame of the source, so a segment is decoded from its own group of pictures on. Each
segment also names a warm-up: the frames before it that a worker analyses (tracking, smoothing) but
never writes, so that tracking at the join matches a run from the start. ``cut_segment`` copies the
packets one segment needs into a small file of the source's own format (so a worker on another
machine needs nothing else), ``SegmentWriter`` encodes a segment with the run's encoder settings, and
``SegmentJoiner`` copies the encoded segments, in order, into the output with the source's audio: the
video is not encoded twice and the timestamps run on unchanged.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

import av

from masquerade.config import EncodeOptions
from masquerade.errors import MediaError, OutputError, UsageError
from masquerade.media.probe import open_input, video_stream
from masquerade.media.reader import DEFAULT_MAX_VIDEO_PIXELS, FrameWindow, VideoReader
from masquerade.media.writer import OutputMuxer, VideoWriter

if TYPE_CHECKING:
    from masquerade.provenance.keys import SigningIdentity
    from masquerade.provenance.plain_tags import EditSummary


@dataclass(frozen=True)
class Segment:
    """Frames ``first .. first + count - 1`` of a run, read from ``warmup`` frames earlier."""

    number: int
    first: int
    """Index of the first frame written (0 = the run's first frame, after trimming)."""
    count: int
    warmup: int
    """Frames before ``first`` that are tracked and smoothed but not written."""
    start_pts: int
    """pts of the first frame read (the warm-up's first)."""
    output_pts: int
    """pts of the first frame written: a key frame of the source, or the run's first frame."""
    end_pts: int
    """pts of the next segment's first frame, or where the run's last frame ends."""

    @property
    def frames(self) -> range:
        return range(self.first, self.first + self.count)


@dataclass(frozen=True)
class SegmentPlan:
    """A video run (after trimming) cut into segments, with the numbers a whole-file reader gives."""

    time_base: Fraction
    fps: Fraction | None
    """The stream's average rate, as ``VideoReader.info.fps`` gives it."""
    frames: int
    output_shift: int
    """pts subtracted from every output timestamp (the first frame's when trimmed, else 0)."""
    end_pts: int
    """Where the run's last frame ends."""
    segments: tuple[Segment, ...]

    def opening(self, last: int) -> Segment:
        """The run's frames from the first through segment ``last``'s, as one stretch without warm-up."""
        end = self.segments[last]
        return Segment(number=0, first=0, count=end.first + end.count, warmup=0,
                       start_pts=self.segments[0].output_pts, output_pts=self.segments[0].output_pts,
                       end_pts=end.end_pts)

    def window(self, segment: Segment) -> FrameWindow:
        """What a reader of ``segment`` (warm-up included) reads, in the whole run's numbers."""
        return FrameWindow(start_pts=segment.start_pts, end_pts=segment.end_pts,
                           first_index=segment.first - segment.warmup, output_shift=self.output_shift,
                           fps=self.fps)


def plan_segments(
    path: Path, seconds: float, warmup_seconds: float, trim_start: float | None = None,
    trim_end: float | None = None,
) -> SegmentPlan:
    """Cut the frames of ``path`` (between the trims, as ``VideoReader`` keeps them) into segments that
    start at the source's key frames and last at least ``seconds`` (the last may be shorter), each
    read from ``warmup_seconds`` of frames earlier. A video whose key frames are further apart gives
    longer segments; one with a single key frame gives one.
    """
    if seconds <= 0 or warmup_seconds < 0:
        raise UsageError(f"segments need a length > 0 s and a warm-up >= 0 s "
                         f"(got {seconds} s and {warmup_seconds} s)")
    with open_input(path) as container:
        stream = video_stream(container)
        if stream is None:
            raise MediaError(f"{path} has no video stream")
        time_base = stream.time_base or Fraction(1, 90000)
        origin = stream.start_time or 0
        fps = stream.average_rate or stream.guessed_rate or None
        declared = origin + stream.duration if stream.duration else None
        pts: list[int] = []
        keys: set[int] = set()
        ends: dict[int, int] = {}
        last_dts: int | None = None
        try:
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                # A segment reads its frames by their timestamps: missing, repeated or backward ones
                # (which one reader moves as it goes) cannot be found again from the middle.
                damaged = packet.pts is None or packet.pts in ends or (
                    packet.dts is not None and last_dts is not None and packet.dts <= last_dts)
                if damaged:
                    raise MediaError(f"{path} has video packets without timestamps or with repeated or "
                                     "backward ones; it cannot be split into segments (run it without "
                                     "--cluster)")
                last_dts = packet.dts if packet.dts is not None else last_dts
                pts.append(packet.pts)
                ends[packet.pts] = packet.pts + (packet.duration or 1)
                if packet.is_keyframe:
                    keys.add(packet.pts)
        except av.FFmpegError as exc:
            raise MediaError(f"{path} is damaged or truncated: {exc}") from exc
    pts.sort()
    warmup = math.ceil(warmup_seconds * float(fps or 25))
    low = origin + int(trim_start / time_base) if trim_start else None
    high = origin + int(trim_end / time_base) if trim_end is not None else None
    first = bisect.bisect_left(pts, low) if low is not None else 0
    stop = bisect.bisect_left(pts, high) if high is not None else len(pts)
    kept = pts[first:stop]
    if not kept:
        raise UsageError(f"trim start {trim_start} s is at or past the end of {path}")
    if stop < len(pts):
        end = pts[stop]  # the last kept frame lasts until the first one cut off
    else:
        end = declared if declared is not None and declared > kept[-1] else ends[kept[-1]]
    starts = [0]
    for index in range(1, len(kept)):
        # (A microsecond of slack: 20 frames at 25 fps are 0.8 s, though not the float 0.8.)
        if kept[index] in keys and (kept[index] - kept[starts[-1]]) * time_base >= seconds - 1e-6:
            starts.append(index)
    segments = []
    for number, start in enumerate(starts):
        stop_index = starts[number + 1] if number + 1 < len(starts) else len(kept)
        lead = min(warmup, start)
        segments.append(Segment(
            number=number, first=start, count=stop_index - start, warmup=lead,
            start_pts=kept[start - lead], output_pts=kept[start],
            end_pts=kept[stop_index] if stop_index < len(kept) else end,
        ))
    return SegmentPlan(time_base=time_base, fps=Fraction(fps) if fps else None, frames=len(kept),
                       output_shift=kept[0] if trim_start else 0, end_pts=end, segments=tuple(segments))


def cut_segment(path: Path, segment: Segment, folder: Path) -> Path:
    """Copy the packets that decode ``segment`` (warm-up included) into a small file in ``folder``.

    It starts at the key frame at or before the warm-up and holds every packet decoded before the
    segment's end (a frame's references are always decoded before it), in the source's own clock.
    """
    with open_input(path) as source:
        stream = video_stream(source)
        if stream is None:
            raise MediaError(f"{path} has no video stream")
        family, time_base = source.format.name, stream.time_base
        if "mp4" in family or "mov" in family:
            # The muxer would otherwise round small time bases up (600 -> 19200), moving every pts.
            suffix, options = ".mov", {"video_track_timescale": str(time_base.denominator)}
        elif "matroska" in family:
            suffix, options = ".mkv", {}
        else:
            suffix, options = ".nut", {}  # FFmpeg's own format keeps any codec and time base
        chunk = Path(folder) / f"segment-{segment.number:05d}{suffix}"
        try:
            with av.open(str(chunk), "w", options=options) as out:
                copy = out.add_stream_from_template(stream)
                source.seek(segment.start_pts, stream=stream, backward=True)
                for packet in source.demux(stream):
                    if packet.size == 0:
                        continue
                    if packet.dts is not None and packet.dts >= segment.end_pts:
                        break
                    packet.stream = copy
                    out.mux(packet)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot cut segment {segment.number} out of {path}: {exc}") from exc
    with open_input(chunk) as check:
        cut = video_stream(check)
        if cut is None or cut.time_base != time_base:
            raise MediaError(f"cannot cut {path} into segments without changing its timestamps "
                             f"({family} time base {time_base}); run it without --cluster")
    return chunk


class SegmentWriter(VideoWriter):
    """Encodes one segment with the run's encoder settings and the whole run's timestamps, video only.

    A segment file is not an output: it carries the watermark in every frame like any frame that
    left the pipeline, and the plain AI tags, but its C2PA label would be lost when the segments are
    joined, so the joined output alone is signed (once, over the whole file).
    """

    _labelled = False


class SegmentJoiner(OutputMuxer):
    """Joins encoded segments, in order, into ``path`` by stream copy, with the input's audio.

    ``reader`` is the whole input (trimmed as the run was), for the audio, subtitles and metadata;
    the first segment gives the video stream's parameters, and every other one must match them.
    ``edit`` is what the segments' runs did together: the label says so.
    """

    def __init__(self, path: Path, reader: VideoReader, options: EncodeOptions, first_segment: Path,
                 edit: EditSummary, identity: SigningIdentity | None = None) -> None:
        self._last_dts: int | None = None
        self.packets = 0
        """Video packets (frames) joined so far."""
        with open_input(first_segment) as template_file:
            template = video_stream(template_file)
            if template is None:
                raise OutputError(f"segment {first_segment} has no video")
            self._template = template
            self._signature = _signature(template)
            super().__init__(path, reader, options, identity, edit.action)
        self.edit = edit  # read when the label is signed, once the file is complete

    def _add_video(self) -> av.VideoStream:
        stream = self._out.add_stream_from_template(self._template)
        stream.metadata.update({k: v for k, v in self._reader.stream.metadata.items() if k in ("language",)})
        return stream

    def append(self, segment: Path) -> int:
        """Copy one segment's video packets; return how many."""
        if self._closed:
            raise RuntimeError("SegmentJoiner is closed")
        count = 0
        with open_input(segment) as container:
            stream = video_stream(container)
            if stream is None or _signature(stream) != self._signature:
                raise OutputError(f"segment {segment.name} was encoded differently from the first; "
                                  "the segments cannot be joined without re-encoding")
            waiting: list[av.Packet] = []
            for packet in container.demux(stream):
                if packet.size == 0 or packet.pts is None:
                    continue
                if packet.dts is None:
                    # Matroska stores no decode times: FFmpeg makes them up after a segment's first
                    # few packets. Those wait until the first known one tells where they go.
                    waiting.append(packet)
                    continue
                for earlier in self._timed(waiting, packet.dts, segment):
                    self._copy(earlier)
                count += len(waiting)
                waiting = []
                self._copy(self._rise(packet, segment))
                count += 1
            for earlier in self._timed(waiting, None, segment):
                self._copy(earlier)
            count += len(waiting)
        self.packets += count
        return count

    def _copy(self, packet: av.Packet) -> None:
        when = float((packet.dts if packet.dts is not None else packet.pts) * packet.time_base)
        packet.stream = self._video
        self._mux(packet)
        self._mux_copied_until(when)

    def _timed(self, packets: list[av.Packet], next_dts: int | None, segment: Path) -> list[av.Packet]:
        """Give packets without a decode time the ticks just before ``next_dts``. Any value after the
        previous dts and at most the packet's own pts decodes the same."""
        if not packets or next_dts is None or self._last_dts is None:
            return packets  # the stream's very first packets: the muxer times them as usual
        for offset, packet in enumerate(packets):
            packet.dts = next_dts - len(packets) + offset
            self._rise(packet, segment)
        return packets

    def _rise(self, packet: av.Packet, segment: Path) -> av.Packet:
        """Decode times must rise across a join. With a constant rate they do by themselves (each
        segment's encoder delay is the same); on a variable rate a segment's first made-up decode
        time may not, and any value after the previous one and at most the frame's pts will do."""
        dts, pts = packet.dts, packet.pts
        assert dts is not None and pts is not None
        if self._last_dts is not None and dts <= self._last_dts:
            # Segments share one time base (checked with the rest of their parameters).
            dts = self._last_dts + 1
            packet.dts = dts
        if dts > pts:
            raise OutputError(f"segment {segment.name} cannot follow the one before it: its first "
                              "frames would decode before the previous segment ends")
        self._last_dts = dts
        return packet


def _signature(stream: av.VideoStream) -> tuple[object, ...]:
    """What two encoded segments must share to be joined into one stream by copying."""
    codec = stream.codec_context
    return (codec.name, codec.width, codec.height, codec.pix_fmt, bytes(codec.extradata or b""),
            stream.time_base)


def join_segments(
    target: Path, segments: Sequence[Path], output: Path, options: EncodeOptions, edit: EditSummary,
    max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS, identity: SigningIdentity | None = None,
) -> int:
    """Write ``output``: the encoded ``segments`` in order plus ``target``'s audio, labelled once with
    ``edit`` (what the segments' runs did together; signed with ``identity``, default the user's key),
    in place atomically. Return the number of frames joined."""
    if not segments:
        raise ValueError("no segments to join")
    with VideoReader(target, options.trim_start, options.trim_end, max_pixels) as reader, \
            SegmentJoiner(output, reader, options, segments[0], edit, identity) as joiner:
        for segment in segments:
            joiner.append(segment)
    return joiner.packets
