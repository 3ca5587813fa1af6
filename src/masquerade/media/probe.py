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


def probe_kind(path: Path) -> Literal["image", "video"]:
    """``image`` or ``video``, decided by content (not extension); ``MediaError`` when it is neither."""
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
        try:
            for _ in container.decode(stream):
                return "video"  # one decodable frame is enough to call it a video
        except av.FFmpegError as exc:
            raise MediaError(f"{path} is damaged: its video cannot be decoded ({exc})") from exc
    raise MediaError(f"{path} has no decodable video frames (empty or truncated)")
