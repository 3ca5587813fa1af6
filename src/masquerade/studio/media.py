"""What an uploaded file is (probed by content), its frames, and face thumbnails cut from them."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Literal

import cv2
import numpy as np

from masquerade.errors import MediaError
from masquerade.types import Face, Image

IMAGE_SUFFIX = {"jpeg": ".jpg", "png": ".png", "webp": ".webp", "bmp": ".bmp", "tiff": ".tif"}
OUTPUT_IMAGE_SUFFIX = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
"""Formats masquerade writes; other stills come out as PNG (lossless, keeps alpha)."""
THUMB_SIZE = 192
"""Face thumbnails are this many pixels square: enough for the detector to find the face again when a
thumbnail is used as a ``reference``."""


@dataclass(frozen=True)
class MediaInfo:
    kind: Literal["image", "video"]
    suffix: str
    """The suffix the server stores the file under (from its content, never the client's name)."""
    width: int
    height: int
    frames: int | None
    fps: float | None


def describe(path: Path) -> MediaInfo:
    """Probe ``path`` by content; ``MediaError`` (the CLI's message) when it is neither kind."""
    from masquerade.config import LimitOptions
    from masquerade.media.probe import probe_kind

    limits = LimitOptions()  # the CLI's default limits: what it would refuse, the studio refuses too
    if probe_kind(path, limits.max_video_pixels) == "image":
        from masquerade.media.image import read_image

        loaded = read_image(path, limits.max_image_pixels)
        height, width = loaded.image.shape[:2]
        return MediaInfo("image", IMAGE_SUFFIX.get(loaded.format, ".png"), width, height, 1, None)
    from masquerade.media.reader import VideoReader

    with VideoReader(path) as reader:
        info = reader.info
        return MediaInfo("video", ".mp4" if "mp4" in info.container else ".mkv", info.width, info.height,
                         info.frame_count, float(info.fps) if info.fps else None)


def output_suffix(kind: str, stored_suffix: str) -> str:
    """Where a swap of this target is written: the same still format when masquerade writes it, else
    PNG; videos as MP4 (every encoder masquerade offers fits in it)."""
    if kind == "video":
        return ".mp4"
    return stored_suffix if stored_suffix in OUTPUT_IMAGE_SUFFIX.values() else ".png"


def read_frame(path: Path, kind: str, index: int, fps: float | None) -> Image:
    """The upright BGR image of a still, or of frame ``index`` of a video (seeking near it first)."""
    if kind == "image":
        from masquerade.media.image import read_image

        return read_image(path).image
    from masquerade.media.reader import VideoReader

    # Seek by time to a little before the frame, then count frames from the one the reader lands on.
    start = max(0.0, (index - 0.5) / fps) if fps and index > 0 else None
    with VideoReader(path, trim_start=start or None) as reader:
        last = None
        for ctx in reader.frames():
            last = ctx.image
            if start is not None or ctx.index >= index:
                break
        if last is None:
            raise MediaError("the video has no decodable frame there")
        return last


class FrameCache:
    """The last few decoded frames: scrubbing back and forth or changing a setting decodes nothing again."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int], Image] = OrderedDict()
        self._lock = Lock()

    def get(self, key: tuple[str, int], load: callable) -> Image:  # type: ignore[valid-type]
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        image = load()
        with self._lock:
            self._items[key] = image
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return image

    def forget(self, file_id: str) -> None:
        with self._lock:
            for key in [k for k in self._items if k[0] == file_id]:
                del self._items[key]


def face_thumbnail(image: Image, face: Face) -> Image:
    """A square crop around ``face`` with room around it (the detector needs context), THUMB_SIZE px."""
    height, width = image.shape[:2]
    cx, cy = (float(v) for v in face.center)
    half = max(face.width, face.height) * 0.9
    x1, y1, x2, y2 = (round(v) for v in (cx - half, cy - half, cx + half, cy + half))
    pad = [max(0, -y1), max(0, y2 - height), max(0, -x1), max(0, x2 - width)]
    crop = image[max(0, y1):min(height, y2), max(0, x1):min(width, x2)]
    if any(pad):
        crop = cv2.copyMakeBorder(crop, *pad, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if crop.shape[0] > THUMB_SIZE else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (THUMB_SIZE, THUMB_SIZE), interpolation=interpolation))


def encode_jpeg(image: Image, quality: int = 90) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise MediaError("could not encode the picture as JPEG")
    return data.tobytes()
