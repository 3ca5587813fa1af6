"""Which video encoders the local FFmpeg (inside PyAV) can actually use, and their pixel formats."""

from __future__ import annotations

from fractions import Fraction

import av

from masquerade.errors import UsageError
from masquerade.media.options import HARDWARE_ENCODERS, SOFTWARE_ENCODERS

# 4:2:0 first: what players expect. nv12 is what most hardware encoders take.
_PREFERRED_PIX_FMTS = ("yuv420p", "nv12")


def _has_encoder(name: str) -> bool:
    try:
        av.Codec(name, "w")
    except Exception:  # av raises UnknownCodecError, a ValueError, or FFmpegError by version
        return False
    return True


def _opens(name: str) -> bool:
    """Whether a hardware encoder really opens: the build lists it even without the device or driver."""
    try:
        ctx = av.CodecContext.create(name, "w")
        ctx.width, ctx.height = 256, 256
        ctx.pix_fmt = pixel_format(name, 256, 256)
        ctx.time_base = Fraction(1, 25)
        ctx.open()
    except Exception:  # any failure (no device, no driver, no permission) means "not available"
        return False
    return True


def available_video_encoders() -> list[str]:
    """Encoders usable for ``--video-encoder``: software ones in this FFmpeg, then working hardware ones."""
    found = [name for name in SOFTWARE_ENCODERS if _has_encoder(name)]
    found += [name for name in HARDWARE_ENCODERS if _has_encoder(name) and _opens(name)]
    return found


def check_encoder(name: str) -> None:
    """Raise ``UsageError`` when ``name`` is not an encoder of the local FFmpeg."""
    if name not in SOFTWARE_ENCODERS + HARDWARE_ENCODERS:
        known = ", ".join(SOFTWARE_ENCODERS + HARDWARE_ENCODERS)
        raise UsageError(f"unsupported video encoder {name!r}; known encoders: {known}")
    if not _has_encoder(name):
        raise UsageError(f"video encoder {name!r} is not available in this FFmpeg build")


def pixel_format(encoder: str, width: int, height: int) -> str:
    """The pixel format to encode with: 4:2:0 when the size allows it, else 4:4:4 (odd sizes)."""
    formats = [f.name for f in (av.Codec(encoder, "w").video_formats or ())]
    if width % 2 == 0 and height % 2 == 0:
        for name in _PREFERRED_PIX_FMTS:
            if name in formats:
                return name
    if "yuv444p" in formats:
        return "yuv444p"
    if width % 2 or height % 2:
        raise UsageError(f"{encoder} cannot encode the odd frame size {width}x{height}")
    return formats[0] if formats else "yuv420p"
