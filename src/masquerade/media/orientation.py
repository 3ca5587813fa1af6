"""Stored pixels <-> display orientation, for EXIF orientation tags and video display matrices.

An orientation is one of eight lossless transforms (the dihedral group of the square), named as
FFmpeg's ``transpose``/flip filters and EXIF do. Frames go through the pipeline upright (as shown
to a viewer), so faces are upright for the detector; the video writer turns them back into the
stored layout and writes the same display matrix, so the output is stored exactly as the input.
"""

from __future__ import annotations

import struct
from typing import Literal

import numpy as np
from numpy.typing import NDArray

Orientation = Literal["none", "hflip", "vflip", "rot180", "transpose", "antitranspose", "cw90", "ccw90"]

_INVERSE: dict[str, Orientation] = {"cw90": "ccw90", "ccw90": "cw90"}

# EXIF Orientation tag value -> transform that makes the stored image upright.
EXIF_ORIENTATIONS: dict[int, Orientation] = {
    1: "none", 2: "hflip", 3: "rot180", 4: "vflip", 5: "transpose", 6: "cw90", 7: "antitranspose", 8: "ccw90",
}  # fmt: skip


def apply(image: NDArray, orientation: Orientation) -> NDArray:
    """``image`` (H, W[, C]) transformed; a C-contiguous copy unless nothing changes."""
    if orientation == "none":
        return image
    if orientation == "hflip":
        out = image[:, ::-1]
    elif orientation == "vflip":
        out = image[::-1]
    elif orientation == "rot180":
        out = image[::-1, ::-1]
    elif orientation == "transpose":
        out = np.swapaxes(image, 0, 1)
    elif orientation == "antitranspose":
        out = np.swapaxes(image, 0, 1)[::-1, ::-1]
    elif orientation == "cw90":
        out = np.rot90(image, k=-1)
    elif orientation == "ccw90":
        out = np.rot90(image, k=1)
    else:
        raise ValueError(f"unknown orientation {orientation!r}")
    return np.ascontiguousarray(out)


def inverse(orientation: Orientation) -> Orientation:
    """The transform that undoes ``orientation`` (all but the 90-degree turns are their own inverse)."""
    return _INVERSE.get(orientation, orientation)


def swaps_axes(orientation: Orientation) -> bool:
    return orientation in ("transpose", "antitranspose", "cw90", "ccw90")


def from_display_matrix(matrix: bytes) -> Orientation | None:
    """The upright transform for an FFmpeg display matrix (9 int32), or None if it is not a multiple of 90°.

    Same decision as the ``ffmpeg`` tool's autorotate (fftools/ffmpeg_filter.c).
    """
    m = struct.unpack("=9i", matrix[:36])
    a, b, c, d = m[0] / 65536.0, m[1] / 65536.0, m[3] / 65536.0, m[4] / 65536.0
    scale = (np.hypot(a, c) + np.hypot(b, d)) / 2
    if scale == 0:
        return None
    # av_display_rotation_get() = -atan2(b, a) is counter-clockwise; the tool uses the clockwise angle.
    theta = float(np.degrees(np.arctan2(b / scale, a / scale))) % 360.0
    near = round(theta / 90.0) * 90 % 360
    if abs(((theta - near) + 180) % 360 - 180) > 1.0:
        return None
    if near == 90:
        return "transpose" if m[3] > 0 else "cw90"
    if near == 180:
        if m[0] < 0 and m[4] < 0:
            return "rot180"
        return "hflip" if m[0] < 0 else ("vflip" if m[4] < 0 else "none")
    if near == 270:
        return "antitranspose" if m[3] < 0 else "ccw90"
    return "vflip" if m[4] < 0 else "none"


def matrix_values(matrix: bytes) -> list[int]:
    """The 9 int32 of a display-matrix side-data blob, as ``VideoStream.set_display_matrix`` takes them."""
    return list(struct.unpack("=9i", matrix[:36]))
