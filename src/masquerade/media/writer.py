"""Streaming video writer: encodes frames as they come, remuxes audio (and subtitles) untouched.

Audio is not decoded or re-encoded: a second, demux-only view of the input feeds its packets into the
output as the video advances, so the file is interleaved and memory stays bounded (one packet ahead).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av

from masquerade.config import EncodeOptions
from masquerade.errors import OutputError, UsageError
from masquerade.media import orientation
from masquerade.media.atomic import atomic_output, write_error
from masquerade.media.colour import FrameConverter
from masquerade.media.encoders import check_encoder, pixel_format
from masquerade.media.options import VIDEO_EXTENSIONS, encoder_options, video_quality
from masquerade.media.probe import open_input
from masquerade.media.reader import VideoReader
from masquerade.provenance.c2pa_label import labelling
from masquerade.provenance.keys import SigningIdentity
from masquerade.provenance.plain_tags import EditSummary, LabelAction, plain_metadata_tags
from masquerade.types import FrameContext

_MUXER_OPTIONS = {".mp4": {"movflags": "+faststart"}, ".m4v": {"movflags": "+faststart"},
                  ".mov": {"movflags": "+faststart"}}  # fmt: skip


def check_video_extension(path: Path) -> str:
    """The lower-case extension of a video output path; ``UsageError`` if masquerade cannot write it."""
    ext = Path(path).suffix.lower()
    if ext not in VIDEO_EXTENSIONS:
        raise UsageError(
            f"unsupported video output extension {ext or '(none)'}; use {', '.join(VIDEO_EXTENSIONS)}"
        )
    return ext


class OutputMuxer:
    """What every video output shares: the atomic temporary file, the provenance label, the container
    with its tags, and the input's audio and subtitle streams copied untouched as the video advances.

    Subclasses add the video stream (``_add_video``) and feed it; ``close()`` flushes them
    (``_finish_video``), copies the rest of the audio, finishes the file and moves it into place.
    Use as a context manager: leaving the block by an exception (Ctrl-C included) removes the
    temporary output, so no broken file is left behind.
    """

    _labelled = True
    """Every output is labelled as synthetic; only a split run's segment files, which are joined into
    a labelled output and never are one, leave it to the join (``masquerade.media.segments``)."""

    def __init__(self, path: Path, reader: VideoReader, options: EncodeOptions,
                 identity: SigningIdentity | None = None, action: LabelAction = "swap") -> None:
        """``identity`` signs the C2PA label (default: :func:`label_identity`, resolved here, before the
        first frame, so a bad key is found before the video is encoded). ``action`` is what the label says
        was done to the faces (swapped, or only enhanced)."""
        self.path = Path(path)
        ext = check_video_extension(self.path)
        if self.path.resolve() == reader.path.resolve():
            raise UsageError(f"output {self.path} is the input video; choose another output name")
        self._reader = reader
        self._closed = False
        self.edit = EditSummary(faces_replaced=0, frames=0, action=action)
        """What the frames written so far had done to them (faces replaced, in how many frames)."""
        self.skipped_streams: list[str] = []
        """Input streams not copied (codec the output container cannot hold), e.g. ``"data:tmcd"``."""
        self._stack = contextlib.ExitStack()
        try:
            temp = self._stack.enter_context(atomic_output(self.path))
            if self._labelled:
                # Every video masquerade writes is labelled with what was done to it: the label is
                # added after the muxer closes the temp file and before it is renamed into place
                # (skipped on errors), when the frames that had a face replaced are counted.
                label = labelling(temp, kind="video", edit=lambda: self.edit, identity=identity)
                self._stack.enter_context(label)
            self._out = self._stack.enter_context(_output_container(temp, _MUXER_OPTIONS.get(ext, {})))
            self._out.metadata.update(plain_metadata_tags(edit=EditSummary(1, 1, 1, action)))
            self._supported = self._out.supported_codecs
            self._video = self._add_video()
            # A second, demux-only view of the input supplies the packets that are copied untouched.
            self._source = self._stack.enter_context(open_input(reader.path))
            self._held: av.Packet | None = None
            self._packets = self._copy_streams(ext, options.skip_audio)
            try:
                self._out.start_encoding()  # opens the encoder and writes the header now, not mid-run
            except av.FFmpegError as exc:
                raise UsageError(f"cannot write this video as {ext}: {exc}") from exc
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise

    def _add_video(self) -> av.VideoStream:
        raise NotImplementedError

    def _finish_video(self) -> None:
        """Write what the video stream still holds (called once, by ``close``)."""

    def _copy_streams(self, ext: str, skip_audio: bool) -> Iterator[av.Packet]:
        """Add audio and subtitle streams from the input as templates; return their packet source."""
        supported = self._supported
        pairs: dict[int, av.stream.Stream] = {}
        for stream in self._source.streams:
            if stream.type == "audio" and not skip_audio:
                name = stream.codec_context.name
                if name not in supported:
                    raise UsageError(
                        f"the input's {name} audio cannot be stored in {ext} without re-encoding; "
                        f"use .mkv or .mp4, or skip audio"
                    )
            elif stream.type == "subtitle" and stream.codec_context is not None:
                if stream.codec_context.name not in supported:
                    self.skipped_streams.append(f"subtitle:{stream.codec_context.name}")
                    continue
            else:
                if stream.type in ("data", "attachment"):
                    self.skipped_streams.append(f"{stream.type}:{stream.codec_tag or stream.index}")
                continue
            pairs[stream.index] = self._out.add_stream_from_template(stream)
            if stream.metadata.get("language"):
                pairs[stream.index].metadata["language"] = stream.metadata["language"]
        self._pairs = pairs
        return self._demux([self._source.streams[i] for i in pairs])

    def _demux(self, streams: list[av.stream.Stream]) -> Iterator[av.Packet]:
        """Packets of the copied streams inside the trim window, re-timed to the output's start."""
        if not streams:
            return
        reader = self._reader
        # The video is shifted by its first frame's time when trimmed; the copied streams move with it.
        shifted = reader.output_shift != 0
        start = reader.output_shift * reader.time_base
        end = (
            reader.start_pts * reader.time_base + Fraction(reader.trim_end)
            if reader.trim_end is not None
            else None
        )
        if shifted:
            self._source.seek(int(start * av.time_base), backward=True)
        finished: set[int] = set()
        for packet in self._source.demux(streams):
            if packet.dts is None or packet.pts is None:  # the flush packet at the end of each stream
                continue
            tb = packet.time_base
            when = packet.pts * tb
            if shifted and when < start:
                continue
            if end is not None and when >= end:
                finished.add(packet.stream.index)
                if len(finished) == len(streams):
                    return  # every stream is past the window: do not read the rest of the file
                continue
            if shifted:
                shift = round(start / tb)
                packet.pts, packet.dts = packet.pts - shift, packet.dts - shift
            yield packet

    def _mux_copied_until(self, seconds: float | None) -> None:
        """Mux copied packets up to ``seconds`` of output time (all when None)."""
        while True:
            if self._held is not None:
                packet = self._held
            else:
                packet = next(self._packets, None)
                if packet is None:
                    return
            if seconds is not None and packet.pts * packet.time_base > seconds:
                self._held = packet  # one packet ahead: memory stays bounded
                return
            self._held = None
            packet.stream = self._pairs[packet.stream.index]
            self._mux(packet)

    def _mux(self, packets: av.Packet | list[av.Packet]) -> None:
        try:
            self._out.mux(packets)
        except av.FFmpegError as exc:
            raise _write_failed(self.path, exc) from exc

    def close(self) -> None:
        """Flush the video, copy the remaining audio, finish the file and move it into place."""
        if self._closed:
            return
        self._closed = True
        try:
            self._finish_video()
            self._mux_copied_until(None)
        except BaseException as exc:
            self._stack.__exit__(type(exc), exc, exc.__traceback__)
            raise
        self._stack.close()  # closes output (trailer), input, then renames temp -> path

    def __enter__(self) -> OutputMuxer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc_type is None:
            self.close()
        elif not self._closed:
            self._closed = True
            self._stack.__exit__(exc_type, exc, tb)


class VideoWriter(OutputMuxer):
    """Encode ``FrameContext``s into ``path`` with the input's timestamps, rotation and audio.

    Use as a context manager: leaving the block normally calls ``close()`` (flush, remux the rest
    of the audio, rename into place); leaving it by an exception (Ctrl-C included) removes the
    temporary output, so no broken file is left behind.
    """

    def __init__(self, path: Path, reader: VideoReader, options: EncodeOptions,
                 identity: SigningIdentity | None = None, action: LabelAction = "swap") -> None:
        check_encoder(options.video_encoder)
        self._encoder = options.video_encoder
        # The quality the watermark survives at this size (the limit refuses worse; a default the mark
        # would not survive on small frames is lowered to it).
        quality = video_quality(options.video_encoder, options.video_quality, reader.info.width,
                                reader.info.height, options.video_preset)
        self._codec_options = encoder_options(options.video_encoder, quality, options.video_preset)
        self._turn = orientation.inverse(reader.orientation)
        self._pending: av.VideoFrame | None = None
        self._last_pts: int | None = None
        self._durations: dict[int, int] = {}  # pts -> duration of frames inside the encoder (its delay)
        super().__init__(path, reader, options, identity, action)

    def _add_video(self) -> av.VideoStream:
        info, reader = self._reader.info, self._reader
        encoder, codec_options = self._encoder, self._codec_options
        if encoder not in self._supported:
            raise UsageError(f"{self.path.suffix} files cannot hold {encoder} video; pick another encoder")
        stream = self._out.add_stream(encoder, rate=info.fps, options=codec_options)
        stream.width, stream.height = info.stored_width, info.stored_height
        stream.pix_fmt = pixel_format(encoder, info.stored_width, info.stored_height)
        # Same clock as the input: the input's pts go through unchanged (VFR kept).
        stream.codec_context.time_base = reader.time_base
        stream.time_base = reader.time_base
        # Same colour tags as the input, and pixels converted with the matrix the reader used.
        src = reader.stream.codec_context
        for name in ("colorspace", "color_primaries", "color_trc"):
            with contextlib.suppress(AttributeError, ValueError):
                setattr(stream.codec_context, name, getattr(src, name))
        stream.codec_context.color_range = 2 if reader.colour_space.full_range else (src.color_range or 0)
        self._converter = FrameConverter(reader.colour_space)
        if reader.display_matrix is not None:
            stream.set_display_matrix(orientation.matrix_values(reader.display_matrix))
        stream.metadata.update({k: v for k, v in reader.stream.metadata.items() if k in ("language",)})
        return stream

    def write(self, frame: FrameContext) -> None:
        """Encode one frame at its own pts (frames must come in presentation order)."""
        if self._closed:
            raise RuntimeError("VideoWriter is closed")
        image = orientation.apply(frame.image, self._turn)
        info = self._reader.info
        if image.shape != (info.stored_height, info.stored_width, 3):
            raise ValueError(
                f"frame {frame.index} is {frame.image.shape}, expected ({info.height}, {info.width}, 3)"
            )
        pts = frame.pts
        if pts is None:
            last = self._last_pts
            pts = last + self._default_duration() if last is not None else self._reader.first_pts
        if self._last_pts is not None and pts <= self._last_pts:
            raise ValueError(f"frame {frame.index}: pts {pts} does not increase (previous {self._last_pts})")
        self._last_pts = pts
        video = self._converter.from_bgr(image, self._video.pix_fmt)
        video.pts = pts - self._reader.output_shift
        video.time_base = self._reader.time_base
        # Each frame lasts until the next one: hold one frame to learn its duration (kept for the
        # last frame too, so the output's duration matches the input's).
        if self._pending is not None:
            self._pending.duration = video.pts - self._pending.pts
            self._encode(self._pending)
        self._pending = video
        done = self.edit
        self.edit = EditSummary(done.faces_replaced + frame.swapped, done.frames + 1,
                                done.frames_changed + int(frame.swapped > 0), done.action)

    def _encode(self, frame: av.VideoFrame | None) -> None:
        try:
            packets = self._video.encode(frame)
        except av.FFmpegError as exc:
            raise OutputError(f"video encoder {self._video.codec_context.name} failed: {exc}") from exc
        if frame is not None:
            self._durations[frame.pts] = frame.duration
        for packet in packets:
            # Encoders leave packet durations empty; the muxer needs the last frame's to end the track.
            packet.duration = self._durations.pop(packet.pts, 0) if packet.pts is not None else 0
        self._mux(packets)
        if frame is not None:
            self._mux_copied_until(float(frame.pts * frame.time_base))

    def _finish_video(self) -> None:
        if self._pending is not None:
            last = self._pending
            end = self._reader.end_pts
            last.duration = end - self._last_pts if end and end > self._last_pts else self._default_duration()
            self._encode(last)
            self._pending = None
        self._encode(None)  # flush: the encoder holds frames back for look-ahead

    def _default_duration(self) -> int:
        fps = self._reader.info.fps
        return max(int(1 / (fps * self._reader.time_base)), 1) if fps else 1

    def __enter__(self) -> VideoWriter:
        return self


@contextlib.contextmanager
def _output_container(temp: Path, options: dict[str, str]) -> Iterator[av.container.OutputContainer]:
    """``av.open`` for writing; on an error the file is dropped before closing, so no trailer is finished."""
    try:
        container = av.open(str(temp), mode="w", options=options)
    except av.FFmpegError as exc:
        raise _write_failed(temp, exc, "create video output") from exc
    try:
        yield container
    except BaseException:
        # Unlink first: closing writes the trailer (and faststart would rewrite the whole file).
        with contextlib.suppress(OSError):
            temp.unlink()
        with contextlib.suppress(Exception):
            container.close()
        raise
    try:
        container.close()
    except av.FFmpegError as exc:
        raise _write_failed(temp, exc, "finish video output") from exc


def _write_failed(path: Path, exc: av.FFmpegError, what: str = "write") -> OutputError:
    """One line for an FFmpeg write failure (a full disk says so, without the temporary file's name)."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return write_error(path, exc, what)
    return OutputError(f"cannot {what} {path}: {exc}")
