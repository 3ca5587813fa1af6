"""Affine warps into small model inputs without aliasing."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.types import Image


def warp_affine(
    image: Image, m: NDArray[np.floating], size: tuple[int, int], replicate: bool = False
) -> Image:
    """``cv2.warpAffine`` (bilinear) of ``image`` by the 2x3 matrix ``m`` into ``size`` = (width, height).
    Outside the image is black, or the nearest edge pixel with ``replicate``.

    A bilinear warp that shrinks by more than 2x skips pixels and aliases (a face in a 4000-px photo
    squeezed into 128 px turns to noise), so such warps first shrink the covered region by a whole
    factor with ``INTER_AREA`` (its fast path: a fractional area resize costs ~20x more) and then warp
    the rest of the way (a shrink of at most 2x).
    """
    m = np.asarray(m, dtype=np.float64).reshape(2, 3)
    scale = math.sqrt(abs(float(np.linalg.det(m[:, :2]))))
    border = cv2.BORDER_REPLICATE if replicate else cv2.BORDER_CONSTANT
    kw = {"flags": cv2.INTER_LINEAR, "borderMode": border, "borderValue": (0, 0, 0)}
    if scale >= 0.5 or scale == 0.0:
        return cv2.warpAffine(image, m, size, **kw)
    w, h = size
    inv = cv2.invertAffineTransform(m)
    corners = np.array([[0, 0], [w, 0], [0, h], [w, h]], dtype=np.float64) @ inv[:, :2].T + inv[:, 2]
    x1, y1 = np.floor(corners.min(axis=0)).astype(int)
    x2, y2 = np.ceil(corners.max(axis=0)).astype(int)
    # Whole shrink factor (what is left is between 0.5x and 1x), no larger than the image: a strip
    # thinner than one step has nothing to alias.
    k = min(math.ceil(0.5 / scale), image.shape[0], image.shape[1])
    # One shrunk pixel more on every side: the bilinear warp samples between pixel centres.
    x1, y1 = max(x1 - k, 0), max(y1 - k, 0)
    x2, y2 = min(x2 + k, image.shape[1]), min(y2 + k, image.shape[0])
    if x2 <= x1 or y2 <= y1:
        if not replicate:
            return np.zeros((h, w, *image.shape[2:]), dtype=image.dtype)
        # Entirely outside: the nearest edge pixels, which replication then spreads (no shrink).
        x1, y1 = min(x1, image.shape[1] - 1), min(y1, image.shape[0] - 1)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        shifted = m.copy()
        shifted[:, 2] += m[:, :2] @ np.array([x1, y1], dtype=np.float64)
        return cv2.warpAffine(image[y1:y2, x1:x2], shifted, size, **kw)
    x1, x2 = _whole_span(x1, x2, k, image.shape[1])
    y1, y2 = _whole_span(y1, y2, k, image.shape[0])
    small = cv2.resize(image[y1:y2, x1:x2], ((x2 - x1) // k, (y2 - y1) // k), interpolation=cv2.INTER_AREA)
    # small = (image - (x1, y1) + 0.5) / k - 0.5, so image = k * small + (x1, y1) + (k - 1) / 2.
    m2 = np.empty((2, 3))
    m2[:, :2] = m[:, :2] * k
    m2[:, 2] = m[:, :2] @ np.array([x1 + (k - 1) / 2, y1 + (k - 1) / 2], dtype=np.float64) + m[:, 2]
    return cv2.warpAffine(small, m2, size, **kw)


def _whole_span(start: int, stop: int, k: int, limit: int) -> tuple[int, int]:
    """``start``..``stop`` grown to a multiple of ``k`` pixels inside 0..``limit`` (``k`` <= ``limit``),
    at least ``k`` long."""
    length = max(k, -(-(stop - start) // k) * k)
    stop = min(start + length, limit)
    start = max(stop - length, 0)
    return start, start + (stop - start) // k * k
