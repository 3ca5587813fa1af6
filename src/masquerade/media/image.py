"""Still images: read (EXIF orientation, grey, 16-bit, alpha) and write (jpg/png/webp, atomic)."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.errors import MediaError, UsageError
from masquerade.media import orientation
from masquerade.media.atomic import atomic_output, write_error
from masquerade.media.options import IMAGE_EXTENSIONS, check_image_quality
from masquerade.media.probe import check_pixel_limit, check_readable, sniff_image_format
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
    frames: int = 1
    """Frames of an animated PNG or WebP (only the first is in ``image``)."""


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


DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
"""The default limit of :func:`read_image` (``LimitOptions.max_image_megapixels`` is the run's)."""
ANIMATED_FORMATS = ("png", "webp")
"""Formats whose extra frames are an animation (a TIFF's extra pages are other pictures or thumbnails)."""


def _open_still(handle: BinaryIO, fmt: str, path: Path, max_pixels: int | None, option: str) -> Any:
    """A Pillow image of ``fmt`` that has read only its header (size, mode, frame count).

    The format's own plugin class is used, not ``Image.open``: that one applies Pillow's process-wide
    decompression-bomb limit, while masquerade applies the run's own limit before decoding. Pillow
    decodes through libjpeg, libpng, libtiff and libwebp as OpenCV does (same pixels), but reports
    damage as exceptions instead of printing warnings on stderr.
    """
    from PIL import BmpImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

    plugin = {"jpeg": JpegImagePlugin.JpegImageFile, "png": PngImagePlugin.PngImageFile,
              "webp": WebPImagePlugin.WebPImageFile, "bmp": BmpImagePlugin.BmpImageFile,
              "tiff": TiffImagePlugin.TiffImageFile}[fmt]
    from PIL import Image as PILImage

    try:
        return plugin(handle)
    except PILImage.DecompressionBombError as exc:  # a few plugins check sizes while reading the header
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        pixels = int(claimed.group(1)) if claimed else 0
        if max_pixels is not None and pixels > max_pixels:
            raise MediaError(f"{path} is {pixels / 1e6:,.0f} MP, above the {max_pixels / 1e6:g} MP limit for "
                             f"images; masquerade refuses it before decoding: shrink it") from None
        raise MediaError(f"{path} is {pixels / 1e6:,.0f} MP, more than its {fmt} decoder accepts") from None
    except Exception as exc:  # Pillow reports a bad header as SyntaxError, OSError, struct.error...
        raise MediaError(f"{path} is damaged: its {fmt} header cannot be read ({_reason(exc)})") from None


def _reason(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _decode(picture: Any, path: Path, fmt: str) -> np.ndarray:
    """Decode a header-checked Pillow image to (H, W) grey, (H, W, 2) grey + alpha, (H, W, 3) BGR or
    (H, W, 4) BGRA, 8 bits per sample."""
    try:
        picture.load()
        mode = picture.mode
        if mode == "1":
            picture, mode = picture.convert("L"), "L"
        elif mode in ("P", "PA"):
            alpha = mode == "PA" or "transparency" in picture.info
            picture, mode = picture.convert("RGBA" if alpha else "RGB"), "RGBA" if alpha else "RGB"
        elif mode in ("La", "LA"):
            picture, mode = picture.convert("LA"), "LA"
        elif mode not in ("L", "RGB", "RGBA", "F") and not mode.startswith("I"):
            target = "RGBA" if "A" in mode or "a" in mode else "RGB"  # RGBa, RGBX, CMYK, YCbCr, LAB, HSV
            picture, mode = picture.convert(target), target
        raw = np.asarray(picture)
    except Exception as exc:  # truncated data, broken chunks, unsupported layouts
        raise MediaError(f"{path} is damaged or truncated: it cannot be decoded as {fmt} "
                         f"({_reason(exc)})") from None
    if mode.startswith("I"):  # 16-bit (or 32-bit integer) grey
        raw = (np.clip(raw.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)
    elif mode == "F":  # float grey: 0..1
        raw = (np.clip(raw, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    if raw.ndim == 3 and raw.shape[2] >= 3:
        raw = np.ascontiguousarray(raw[..., [2, 1, 0, 3][: raw.shape[2]]])  # RGB(A) -> BGR(A)
    return raw


def read_image(path: Path, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
               option: str = "--max-image-megapixels") -> LoadedImage:
    """Load a still image as upright BGR uint8 plus its alpha channel; ``MediaError`` if unreadable.

    The size in the file's header is checked against ``max_pixels`` (None: no limit) before anything
    is decoded; ``option`` is what the refusal names as the way to raise the limit.
    """
    path = Path(path)
    check_readable(path)
    with open(path, "rb") as handle:
        fmt = sniff_image_format(handle.read(16))
        if fmt is None:
            raise MediaError(f"{path} is not a supported image (jpg, png, webp, bmp, tiff)")
        handle.seek(0)
        picture = _open_still(handle, fmt, path, max_pixels, option)
        width, height = picture.size
        check_pixel_limit(path, width, height, max_pixels, "images", option)
        frames = int(getattr(picture, "n_frames", 1)) if fmt in ANIMATED_FORMATS else 1
        raw = _decode(picture, path, fmt)
        handle.seek(0)
        data = handle.read()
    if raw.size == 0:
        raise MediaError(f"{path} is damaged or truncated: it cannot be decoded as {fmt}")
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
    return LoadedImage(image=image, alpha=alpha, format=fmt, grey=raw.ndim == 2 or raw.shape[2] == 2,
                       frames=frames)


def check_image_extension(path: Path) -> str:
    """The lower-case extension of an image output path; ``UsageError`` if masquerade cannot write it."""
    ext = Path(path).suffix.lower()
    if ext not in IMAGE_EXTENSIONS:
        shown = ext or "(none)"
        raise UsageError(f"unsupported image output extension {shown}; use .jpg, .png or .webp")
    return ext


def encode_image(ext: str, image: Image, alpha: NDArray[np.uint8] | None = None, quality: int = 95) -> bytes:
    """``image`` (BGR uint8) encoded as ``ext`` (.jpg/.jpeg/.png/.webp); ``alpha`` is kept for png and
    webp (JPEG has no alpha channel). ``quality`` (40..100: the watermark's measured limit) applies to
    jpg and webp; PNG is lossless."""
    ext = check_image_extension(Path(f"x{ext}"))
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
    return encoded.tobytes()


def write_bytes(temp: Path, data: bytes, output: Path) -> None:
    """Write ``data`` to ``temp`` (the temporary file of :func:`atomic_output` for ``output``);
    ``OutputError`` naming ``output`` on failure, saying so when the disk is full."""
    try:
        Path(temp).write_bytes(data)
    except OSError as exc:
        raise write_error(Path(output), exc) from exc


def write_image(path: Path, image: Image, alpha: NDArray[np.uint8] | None = None, quality: int = 95) -> None:
    """Write ``image`` (BGR uint8) atomically as jpg/png/webp (see :func:`encode_image`)."""
    path = Path(path)
    data = encode_image(check_image_extension(path), image, alpha, quality)
    with atomic_output(path) as temp:
        write_bytes(temp, data, path)
