"""Streaming video reader: decodes one frame at a time into upright BGR ``FrameContext``s."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av

from masquerade.errors import MediaError, UsageError
from masquerade.media import orientation
from masquerade.media.colour import ColourSpace, FrameConverter
from masquerade.media.probe import check_video_frame_size, open_input, video_stream
from masquerade.types import FrameContext

DEFAULT_MAX_VIDEO_PIXELS = 7680 * 4320
"""8K UHD: the default limit of :class:`VideoReader` (``LimitOptions.max_video_megapixels`` is the run's)."""


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video before the first frame."""

    width: int
    """Width of the frames ``frames()`` yields (upright, as displayed)."""
    height: int
    fps: Fraction | None
    """Average frame rate; None when the container does not say."""
    time_base: Fraction
    frame_count: int | None
    """Frames to expect (after trimming); exact from the container header when untrimmed, else estimated."""
    duration: float | None
    """Seconds (after trimming)."""
    rotation: int
    """Display rotation stored in the file, degrees counter-clockwise in [0, 360) (0, 90, 180, 270)."""
    codec: str
    pix_fmt: str | None
    has_audio: bool
    audio_codec: str | None
    container: str
    stored_width: int
    """Width of the pixels as stored in the file (differs from ``width`` for 90° rotations)."""
    stored_height: int


@dataclass(frozen=True)
class FrameWindow:
    """A stretch of a video in its stream's own clock: what one segment of a split run reads.

    A run split into segments (``masquerade.segments``) reads each part from its own small file; the
    window keeps the numbers of the whole run, so frames, timestamps and the rate are the ones a
    single reader of the whole video would give.
    """

    start_pts: int
    """The first frame read."""
    end_pts: int
    """Frames at or after this are not read; the last frame read lasts until here."""
    first_index: int
    """Index of the first frame read, counted in the whole run (after trimming)."""
    output_shift: int
    """Subtracted from every output timestamp: the whole run's first pts when it was trimmed, else 0."""
    fps: Fraction | None
    """The whole video's average rate (a part's own would differ on a variable rate)."""

    def __post_init__(self) -> None:
        if self.end_pts <= self.start_pts or self.first_index < 0:
            raise ValueError(f"empty or negative frame window {self}")


class VideoReader:
    """Decode a video frame by frame (bounded memory), optionally between ``trim_start`` and ``trim_end`` s,
    or only the frames of a ``window``.

    Frames come out upright: a file's display rotation is applied so faces stand up for the
    detectors; ``VideoWriter`` stores them back the way the input stored them. ``pts`` are the
    input's own timestamps, in ``info.time_base``.
    """

    def __init__(self, path: Path, trim_start: float | None = None, trim_end: float | None = None,
                 max_pixels: int | None = DEFAULT_MAX_VIDEO_PIXELS, *,
                 window: FrameWindow | None = None) -> None:
        """``max_pixels``: frames larger than this (by the stream's header) are refused before decoding."""
        self.path = Path(path)
        if trim_start is not None and trim_start < 0:
            raise UsageError(f"trim start must be >= 0 s, got {trim_start}")
        if trim_end is not None and trim_end <= (trim_start or 0.0):
            raise UsageError(f"trim end ({trim_end} s) must be after trim start ({trim_start or 0.0} s)")
        if window is not None and (trim_start is not None or trim_end is not None):
            raise ValueError("a frame window and trims cannot be combined (the window is already trimmed)")
        self.window = window
        self._container = open_input(self.path)
        try:
            self._setup(trim_start, trim_end, max_pixels)
        except BaseException:
            self._container.close()
            raise

    def _setup(self, trim_start: float | None, trim_end: float | None, max_pixels: int | None) -> None:
        container = self._container
        stream = video_stream(container)
        if stream is None:
            raise MediaError(f"{self.path} has no video stream")
        check_video_frame_size(self.path, stream, max_pixels)
        _check_not_cut(self.path, container)
        stream.thread_type = "AUTO"  # frame + slice threads: several times faster decoding
        self.stream: av.VideoStream = stream
        """The input video stream (the writer copies its colour tags and metadata)."""
        self.time_base: Fraction = stream.time_base or Fraction(1, 90000)
        self.start_pts: int = stream.start_time or 0
        """The stream's start time; trims are measured from it."""
        self.trim_start = trim_start
        self.trim_end = trim_end
        self.end_pts: int | None = None
        """Where the last frame yielded ends (its pts + duration); known once ``frames()`` is exhausted."""
        self.retimed_frames = 0
        """Frames whose timestamp did not increase in the file and was moved so that they play in order."""
        window = self.window
        if window is not None:
            self._bounds: tuple[int | None, int | None] = (window.start_pts, window.end_pts)
        else:
            self._bounds = (
                self.start_pts + int(trim_start / self.time_base) if trim_start else None,
                self.start_pts + int(trim_end / self.time_base) if trim_end is not None else None,
            )
        if self._bounds[0] is not None:
            # Seek to the key frame at or before the start; frames before it are decoded and dropped.
            container.seek(self._bounds[0], stream=stream, backward=True)
        self._decoded = self._decode()
        first = next(self._decoded, None)
        if first is None:
            if trim_start:
                raise UsageError(f"trim start {trim_start} s is at or past the end of {self.path}")
            raise MediaError(f"{self.path} has no decodable video frames (empty or truncated)")
        self._first: av.VideoFrame | None = first
        # The display matrix travels as frame side data (FFmpeg copies the stream's to every frame).
        matrix = first.side_data.get("DISPLAYMATRIX") if len(first.side_data) else None
        self.display_matrix: bytes | None = bytes(matrix) if matrix is not None else None
        turn = orientation.from_display_matrix(self.display_matrix) if self.display_matrix else None
        self.orientation: orientation.Orientation = turn or "none"
        self.first_pts: int = first.pts if first.pts is not None else 0
        self.colour_space = ColourSpace.of(
            first.colorspace, first.color_range, first.format.name, first.height
        )
        self._converter = FrameConverter(self.colour_space)
        self.output_shift: int = (
            window.output_shift if window is not None else self.first_pts if trim_start else 0
        )
        """Subtracted from every timestamp written: a trimmed output starts at 0."""
        self.info = self._make_info(first)

    def _make_info(self, first: av.VideoFrame) -> VideoInfo:
        stream, container = self.stream, self._container
        fps = stream.average_rate or stream.guessed_rate or None
        total: float | None = None
        if stream.duration is not None:
            total = float(stream.duration * self.time_base)
        elif container.duration is not None:
            total = container.duration / av.time_base
        start = float((self.first_pts - self.start_pts) * self.time_base) if self.trim_start else 0.0
        end = total if self.trim_end is None or total is None else min(total, self.trim_end)
        duration = None if end is None else max(end - start, 0.0)
        if self.window is not None:
            fps = self.window.fps
            duration = float((self.window.end_pts - self.window.start_pts) * self.time_base)
        if self.trim_start is None and self.trim_end is None and self.window is None and stream.frames > 0:
            count: int | None = stream.frames
        else:
            count = round(duration * fps) if duration is not None and fps else None
        width, height = first.width, first.height
        audio = container.streams.audio
        return VideoInfo(
            width=height if orientation.swaps_axes(self.orientation) else width,
            height=width if orientation.swaps_axes(self.orientation) else height,
            fps=Fraction(fps) if fps else None,
            time_base=self.time_base,
            frame_count=count,
            duration=duration,
            rotation=first.rotation % 360,
            codec=stream.codec_context.name,
            pix_fmt=first.format.name,
            has_audio=len(audio) > 0,
            audio_codec=audio[0].codec_context.name if audio else None,
            container=container.format.name,
            stored_width=width,
            stored_height=height,
        )

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Input frames inside the trim window, in presentation order, with their stored pixels."""
        start, end = self._bounds
        last = None
        try:
            # container.decode() also sends the final empty packet, so the decoder's delayed frames come out.
            for frame in self._container.decode(self.stream):
                if frame.pts is not None:
                    if start is not None and frame.pts < start:
                        continue
                    if end is not None and frame.pts >= end:
                        self.end_pts = frame.pts  # the last kept frame lasts until this one starts
                        return
                    last = frame
                yield frame
        except av.FFmpegError as exc:
            raise MediaError(f"{self.path} is damaged or truncated: {exc}") from exc
        if last is not None and self.window is not None:
            # A part of a video: its last frame lasts until the next part starts (or the video ends).
            self.end_pts = self.window.end_pts
        elif last is not None:
            # A frame's own duration is its packet's, which with B-frames is not its display time;
            # the stream's declared duration is what players show, so the last frame runs to it.
            last_end = last.pts + (last.duration or 1)
            declared = self.start_pts + self.stream.duration if self.stream.duration else None
            self._check_reached_end(last_end)
            self.end_pts = declared if declared is not None and declared > last.pts else last_end

    def _check_reached_end(self, last_end: int) -> None:
        """Raise ``MediaError`` when decoding stopped well before the end the container announces."""
        stream, container = self.stream, self._container
        tagged = _parse_duration_tag(stream.metadata.get("DURATION"))  # Matroska writes one per track
        if stream.duration or tagged:
            want = float(stream.duration * self.time_base) if stream.duration else tagged
            step = float(1 / self.info.fps) if self.info.fps else 0.0
            slack = max(3 * step, 0.25)
        elif container.duration:
            # The container's duration covers every stream (audio may run on): be lenient.
            want = container.duration / av.time_base
            slack = max(2.0, 0.1 * want)
        else:
            return
        got = float((last_end - self.start_pts) * self.time_base)
        if got + slack < want:
            raise MediaError(f"{self.path} is truncated: its video stops at {got:.2f} s of {want:.2f} s")

    def frames(self) -> Iterator[FrameContext]:
        """Yield each frame as a ``FrameContext`` with an upright BGR image and the input's pts."""
        if self._first is None:
            raise RuntimeError("VideoReader.frames() can be iterated only once")
        first, self._first = self._first, None
        index, previous, offset = (self.window.first_index if self.window else 0), None, 0
        step = max(int(1 / (self.info.fps * self.time_base)), 1) if self.info.fps else 1
        for frame in _chain(first, self._decoded):
            # Streams without timestamps (raw elementary streams) get a constant-rate clock.
            pts = (frame.pts + offset if frame.pts is not None
                   else 0 if previous is None else previous + step)
            if previous is not None and pts <= previous:
                # Damaged timing (two frames with one timestamp, or a clock that jumps back): an encoder
                # needs increasing timestamps. A repeat moves one tick; a jump back shifts the rest on.
                self.retimed_frames += 1
                if previous - pts < step:
                    pts = previous + 1
                else:
                    offset += previous + step - pts
                    pts = previous + step
            image = orientation.apply(self._converter.to_bgr(frame), self.orientation)
            yield FrameContext(index=index, image=image, pts=pts, time_base=self.time_base)
            index, previous = index + 1, pts

    def close(self) -> None:
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_not_cut(path: Path, container: av.container.InputContainer) -> None:
    """Raise ``MediaError`` when the container's index points past the end of the file (cut download)."""
    size = path.stat().st_size
    for stream in container.streams:
        entries = stream.index_entries
        if len(entries) and any(e.pos + e.size > size for e in entries[-8:]):
            raise MediaError(f"{path} is truncated: its index refers to data past the end of the file")


def _parse_duration_tag(value: str | None) -> float | None:
    """Seconds from a ``HH:MM:SS.nnnnnnnnn`` tag, or None."""
    try:
        hours, minutes, seconds = (value or "").split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None


def _chain(first: av.VideoFrame, rest: Iterator[av.VideoFrame]) -> Iterator[av.VideoFrame]:
    yield first
    yield from rest
