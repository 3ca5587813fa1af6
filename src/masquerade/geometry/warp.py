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
    squeezed into 128 px turns to noise), so such warps first shrink the covered region with
    ``INTER_AREA`` and then warp the rest of the way.
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
    x1, y1 = max(x1, 0), max(y1, 0)
    x2, y2 = min(x2, image.shape[1]), min(y2, image.shape[0])
    if x2 <= x1 or y2 <= y1:
        if not replicate:
            return np.zeros((h, w, *image.shape[2:]), dtype=image.dtype)
        # Entirely outside: keep the nearest edge pixels, which replication then spreads.
        x1, y1 = min(x1, image.shape[1] - 1), min(y1, image.shape[0] - 1)
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    f = 2.0 * scale
    nw, nh = max(1, round((x2 - x1) * f)), max(1, round((y2 - y1) * f))
    small = cv2.resize(image[y1:y2, x1:x2], (nw, nh), interpolation=cv2.INTER_AREA)
    fx, fy = nw / (x2 - x1), nh / (y2 - y1)
    # small = (image - (x1, y1)) * (fx, fy), so image = small / (fx, fy) + (x1, y1).
    m2 = np.empty((2, 3))
    m2[:, :2] = m[:, :2] @ np.diag([1.0 / fx, 1.0 / fy])
    m2[:, 2] = m[:, :2] @ np.array([x1, y1], dtype=np.float64) + m[:, 2]
    return cv2.warpAffine(small, m2, size, **kw)
