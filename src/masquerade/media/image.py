"""Still images: read (EXIF orientation, grey, 16-bit, alpha) and write (jpg/png/webp, atomic)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.errors import MediaError, UsageError
from masquerade.media import orientation
from masquerade.media.atomic import atomic_output
from masquerade.media.options import IMAGE_EXTENSIONS, check_image_quality
from masquerade.media.probe import check_readable, sniff_image_format
from masquerade.types import Image


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """An image as the pipeline wants it, plus what is needed to write it back faithfully."""

    image: Image
    """BGR uint8 (H, W, 3), upright (EXIF orientation applied)."""
    alpha: NDArray[np.uint8] | None
    """(H, W) uint8 alpha, or None when the file has none."""
    format: str
    """Content format: ``jpeg``, ``png``, ``webp``, ``bmp`` or ``tiff``."""
    grey: bool = False
    """The file is greyscale: the result should be written back grey."""


def _tiff_orientation(tiff: bytes) -> int:
    """The Orientation (0x0112) tag of IFD0 in a TIFF/EXIF block, 1 when absent or unreadable."""
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    if ifd + 2 > len(tiff):
        return 1
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    for i in range(count):
        entry = ifd + 2 + 12 * i
        if entry + 12 > len(tiff):
            break
        tag, kind, _, value = struct.unpack_from(order + "HHIH", tiff, entry)
        if tag == 0x0112 and kind == 3:  # SHORT
            return value if value in orientation.EXIF_ORIENTATIONS else 1
    return 1


def _exif_block(data: bytes, fmt: str) -> bytes:
    """The raw TIFF-structured EXIF block of a JPEG, PNG or WebP file, or b''."""
    if fmt == "jpeg":
        pos = 2
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            (size,) = struct.unpack_from(">H", data, pos + 2)
            if marker == 0xE1 and data[pos + 4 : pos + 10] == b"Exif\0\0":
                return data[pos + 10 : pos + 2 + size]
            if marker in (0xDA, 0xD9):  # start of scan / end: no more metadata segments
                break
            pos += 2 + size
    elif fmt == "png":
        pos = 8
        while pos + 8 <= len(data):
            size, kind = struct.unpack_from(">I4s", data, pos)
            if kind == b"eXIf":
                return data[pos + 8 : pos + 8 + size]
            if kind == b"IDAT":  # eXIf must come before the image data
                break
            pos += 12 + size
    elif fmt == "tiff":
        return data
    elif fmt == "webp":
        pos = 12
        while pos + 8 <= len(data):
            kind, size = struct.unpack_from("<4sI", data, pos)
            if kind == b"EXIF":
                block = data[pos + 8 : pos + 8 + size]
                return block[6:] if block.startswith(b"Exif\0\0") else block
            pos += 8 + size + (size & 1)
    return b""


def exif_orientation(data: bytes, fmt: str) -> int:
    """EXIF orientation (1..8) of an encoded image; 1 when it has none."""
    try:
        return _tiff_orientation(_exif_block(data, fmt))
    except struct.error:  # a damaged EXIF block is ignored, as viewers do
        return 1


def _to_uint8(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):  # float TIFF/EXR: 0..1
        return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    raise MediaError(f"unsupported image sample type {image.dtype}")


def read_image(path: Path) -> LoadedImage:
    """Load a still image as upright BGR uint8 plus its alpha channel; ``MediaError`` if unreadable."""
    path = Path(path)
    check_readable(path)
    data = path.read_bytes()
    fmt = sniff_image_format(data[:16])
    if fmt is None:
        raise MediaError(f"{path} is not a supported image (jpg, png, webp, bmp, tiff)")
    # IMREAD_UNCHANGED keeps alpha and ignores EXIF orientation; orientation is applied below,
    # to colour and alpha alike.
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.size == 0:
        raise MediaError(f"{path} is damaged or truncated: it cannot be decoded as {fmt}")
    raw = _to_uint8(raw)
    alpha = None
    if raw.ndim == 2:
        image = cv2.cvtColor(raw, cv2.COLOR_GRAY2BGR)
    elif raw.shape[2] == 2:  # grey + alpha
        image, alpha = cv2.cvtColor(raw[..., 0], cv2.COLOR_GRAY2BGR), raw[..., 1]
    elif raw.shape[2] == 4:
        image, alpha = raw[..., :3], raw[..., 3]
    else:
        image = raw[..., :3]
    turn = orientation.EXIF_ORIENTATIONS[exif_orientation(data, fmt)]
    image = np.ascontiguousarray(orientation.apply(image, turn))
    if alpha is not None:
        alpha = np.ascontiguousarray(orientation.apply(alpha, turn))
    return LoadedImage(image=image, alpha=alpha, format=fmt, grey=raw.ndim == 2 or raw.shape[2] == 2)


def check_image_extension(path: Path) -> str:
    """The lower-case extension of an image output path; ``UsageError`` if masquerade cannot write it."""
    ext = Path(path).suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        shown = ext or "(none)"
        raise UsageError(f"unsupported image output extension {shown}; use .jpg, .png or .webp")
    return ext


def write_image(path: Path, image: Image, alpha: NDArray[np.uint8] | None = None, quality: int = 95) -> None:
    """Write ``image`` (BGR uint8) atomically as jpg/png/webp; ``alpha`` is kept for png and webp.

    JPEG has no alpha channel, so ``alpha`` is dropped there. ``quality`` (40..100: the watermark's
    measured limit) applies to jpg and webp; PNG is lossless.
    """
    path = Path(path)
    ext = check_image_extension(path)
    check_image_quality(quality)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a BGR uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    pixels = image
    if alpha is not None and ext in (".png", ".webp"):
        if alpha.shape != image.shape[:2]:
            raise ValueError(f"alpha {alpha.shape} does not match image {image.shape[:2]}")
        pixels = np.dstack([image, alpha.astype(np.uint8, copy=False)])
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    else:
        params = [cv2.IMWRITE_PNG_COMPRESSION, 3]  # fast; PNG is lossless at every level
    ok, encoded = cv2.imencode(ext, pixels, params)
    if not ok:
        raise MediaError(f"could not encode the image as {ext}")
    with atomic_output(path) as temp:
        temp.write_bytes(encoded.tobytes())
