"""What a file is, by its content: a still image, a video, or neither (``MediaError``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import av

from masquerade.errors import MediaError

# Signatures of the still formats OpenCV decodes. Checked before FFmpeg, whose image2 demuxer would
# also "open" a still (or a text file named .jpg) as a one-frame video.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tiff"),
    (b"MM\x00*", 0, "tiff"),
)


def sniff_image_format(head: bytes) -> str | None:
    """``jpeg``/``png``/``webp``/``bmp``/``tiff`` from a file's first 16 bytes, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    for magic, offset, name in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return name
    return None


def check_readable(path: Path) -> None:
    """Raise ``MediaError`` unless ``path`` is an existing, readable, non-empty file."""
    path = Path(path)
    if not path.exists():
        raise MediaError(f"{path}: no such file")
    if not path.is_file():
        raise MediaError(f"{path} is not a file")
    if not os.access(path, os.R_OK):
        raise MediaError(f"{path} is not readable (permission denied)")
    if path.stat().st_size == 0:
        raise MediaError(f"{path} is empty")


STILL_BYTES_PER_PIXEL = 24
"""Peak memory of a swap per pixel of a still, measured at 50 MP (1.2 GB): the decoded picture, working
copies, the watermark's planes and masks."""


def check_pixel_limit(path: Path, width: int, height: int, max_pixels: int | None, what: str,
                      option: str) -> None:
    """``MediaError`` when ``width x height`` is above ``max_pixels`` (None: no limit), naming the option
    that raises the limit (and, for stills, about the memory the picture would take)."""
    if max_pixels is None or width * height <= max_pixels:
        return
    megapixels = width * height / 1e6
    cost = (f" (about {width * height * STILL_BYTES_PER_PIXEL / 1e9:,.1f} GB for this one)"
            if what == "images" else "")
    raise MediaError(
        f"{path} is {width}x{height} ({megapixels:,.0f} MP), above the {max_pixels / 1e6:g} MP limit for "
        f"{what}; masquerade refuses it before decoding: shrink it, or raise the limit with {option} if "
        f"this machine has the memory{cost}"
    )


def video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """The container's first real video stream (cover art is not one)."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


def open_input(path: Path) -> av.container.InputContainer:
    """``av.open`` for reading, with FFmpeg's failures turned into one-line ``MediaError``s."""
    check_readable(path)
    try:
        return av.open(str(path), mode="r")
    except av.FFmpegError as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise MediaError(f"{path} is not a readable video or image ({reason})") from exc


def check_video_frame_size(path: Path, stream: av.VideoStream, max_pixels: int | None) -> None:
    """``MediaError`` when the stream's frames (from its header) are above ``max_pixels``."""
    context = stream.codec_context
    check_pixel_limit(path, context.width or 0, context.height or 0, max_pixels, "video frames",
                      "--max-video-megapixels")


def probe_kind(path: Path, max_video_pixels: int | None = None) -> Literal["image", "video"]:
    """``image`` or ``video``, decided by content (not extension); ``MediaError`` when it is neither.
    A video whose frames are above ``max_video_pixels`` is refused before one is decoded."""
    path = Path(path)
    check_readable(path)
    with open(path, "rb") as handle:
        head = handle.read(16)
    if sniff_image_format(head) is not None:
        return "image"
    with open_input(path) as container:
        stream = video_stream(container)
        if stream is None:
            raise MediaError(f"{path} has no video stream")
        check_video_frame_size(path, stream, max_video_pixels)
        try:
            for _ in container.decode(stream):
                return "video"  # one decodable frame is enough to call it a video
        except av.FFmpegError as exc:
            raise MediaError(f"{path} is damaged: its video cannot be decoded ({exc})") from exc
    raise MediaError(f"{path} has no decodable video frames (empty or truncated)")
