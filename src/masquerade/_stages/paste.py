"""Paste a model's aligned output crop back into the frame, on a region of interest only.

InsightFace warps the crop *and* a white mask to the full frame, thresholds, erodes and blurs at frame
size, then truncates the blend to uint8. Here only the crop's footprint (a few hundred pixels square)
is touched, the mask is built once in crop space with an exact zero border and a smooth ramp, the
colour blend is done in float32 on the model's float output, and the result is rounded, not
truncated. Pixels where the mask is 0 are copied bit for bit.

Masks (``SwapOptions.mask``):
- ``box``: the crop square, eroded by ``erode`` and feathered over ``feather`` (fractions of the crop
  side) with a smoothstep ramp: exactly 0 on the crop's edge, exactly 1 inside.
- ``mesh``: the convex hull of the 468 face-mesh landmarks (the face's outline), eroded and feathered
  the same way, and never wider than the box mask.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.geometry.align import CROP_INTERPOLATION, crop_footprint, invert, transform_points
from masquerade.types import Affine, Image, Mask

BOX_ERODE = 0.04
"""Default box-mask erosion, as a fraction of the crop side."""
BOX_FEATHER = 0.12
"""Default box-mask feather width, as a fraction of the crop side."""
MESH_ERODE = 0.02
MESH_FEATHER = 0.06


def _smoothstep(t: NDArray[np.float32]) -> NDArray[np.float32]:
    t = np.clip(t, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def box_mask(size: int, erode: float = BOX_ERODE, feather: float = BOX_FEATHER) -> Mask:
    """(size, size) soft mask: 0 within ``erode * size`` of the edge, ramping to 1 over ``feather * size``.

    Cached (a few sizes per run, asked for per face and frame); the array is read-only.
    """
    mask = _box_mask(size, erode, feather)
    mask.flags.writeable = False
    return mask


def _box_mask(size: int, erode: float, feather: float) -> Mask:
    centres = np.arange(size, dtype=np.float32) + 0.5
    edge = np.minimum(centres, size - centres)  # distance of each pixel centre to the nearest edge
    ramp = _smoothstep((edge - erode * size) / max(feather * size, 1e-6))
    return np.outer(ramp, ramp).astype(np.float32)


def mesh_mask(
    landmarks: NDArray[np.floating],
    affine: Affine,
    size: int,
    erode: float = MESH_ERODE,
    feather: float = MESH_FEATHER,
) -> Mask:
    """(size, size) soft mask of the face outline: the landmarks' convex hull in crop space, feathered."""
    pts = transform_points(np.asarray(landmarks, dtype=np.float32)[:, :2], affine)
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    solid = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(solid, hull, 1, lineType=cv2.LINE_8, shift=4)
    inside = cv2.distanceTransform(solid, cv2.DIST_L2, 5)
    ramp = _smoothstep((inside - erode * size) / max(feather * size, 1e-6))
    # The crop's own edge still bounds the paste (a face reaching out of the crop must not leave a seam).
    return np.minimum(ramp, box_mask(size, erode=0.0, feather=BOX_FEATHER / 2))


def _crop_to_roi(affine: Affine, box: tuple[int, int, int, int]) -> Affine:
    """Crop coordinates -> coordinates inside the frame's ROI ``box`` (the inverse of ``affine``, shifted)."""
    to_roi = invert(affine)
    to_roi[:, 2] -= (box[0], box[1])
    return to_roi


def frame_mask(
    mask: Mask, affine: Affine, frame_shape: tuple[int, ...]
) -> tuple[tuple[int, int, int, int], Mask] | None:
    """A crop-space mask carried into the frame: the ROI box and the mask over that ROI (or None)."""
    size = mask.shape[0]
    box = crop_footprint(affine, size, frame_shape)
    if box is None:
        return None
    x1, y1, x2, y2 = box
    to_roi = _crop_to_roi(affine, box)
    # Bilinear for the mask: no ringing, stays in [0, 1], and 0 stays 0 away from the mask's support.
    roi_mask = cv2.warpAffine(
        np.ascontiguousarray(mask, dtype=np.float32),
        to_roi,
        (x2 - x1, y2 - y1),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return box, roi_mask


def output_to_crop(raw: NDArray[np.floating], lo: float, span: float) -> NDArray[np.float32]:
    """A face model's raw (N, 3, S, S) RGB output in ``[lo, lo + span]`` -> (N, S, S, 3) BGR float
    0..255 crops (kept as float so the paste adds no extra rounding)."""
    unit = np.clip((np.asarray(raw, np.float32) - lo) / span, 0.0, 1.0)
    return np.ascontiguousarray(unit.transpose(0, 2, 3, 1)[..., ::-1] * 255.0, dtype=np.float32)


def paste_back(
    frame: Image,
    crop: NDArray[np.floating] | Image,
    mask: Mask,
    affine: Affine,
    interpolation: int = CROP_INTERPOLATION,
) -> Image:
    """A copy of ``frame`` with ``crop`` (BGR, 0..255, float or uint8) blended in under ``mask``.

    ``affine`` is the frame-to-crop matrix the crop was made with. Only the crop's footprint is
    processed; pixels whose mask weight is 0 keep their exact value.
    """
    out = frame.copy()
    paste_into(out, crop, mask, affine, interpolation)
    return out


def paste_into(
    out: Image,
    crop: NDArray[np.floating] | Image,
    mask: Mask,
    affine: Affine,
    interpolation: int = CROP_INTERPOLATION,
) -> None:
    """:func:`paste_back` in place: ``out`` changes on the crop's footprint only (no frame copy)."""
    placed = frame_mask(mask, affine, out.shape)
    if placed is None:
        return
    (x1, y1, x2, y2), roi_mask = placed
    to_roi = _crop_to_roi(affine, (x1, y1, x2, y2))
    face = cv2.warpAffine(
        np.ascontiguousarray(crop, dtype=np.float32),
        to_roi,
        (x2 - x1, y2 - y1),
        flags=interpolation,
        borderMode=cv2.BORDER_REPLICATE,
    )
    roi = out[y1:y2, x1:x2].astype(np.float32)
    blended = roi + roi_mask[..., None] * (face - roi)
    out[y1:y2, x1:x2] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)

