"""Alignment maths: 5-point templates, similarity estimates, crops and their inverses.

A model that works on aligned faces declares a 5-point template in its own input pixels
(``ModelSpec.template`` at ``ModelSpec.size_px``). A crop is the similarity transform (rotation,
uniform scale, translation) that maps the face's ``kps5`` onto that template in the least-squares
sense (Umeyama 1991, no reflection), applied with ``cv2.warpAffine``. The same 2x3 matrix, inverted,
brings the model's output back into the frame (see :mod:`masquerade._stages.paste`).

Every function here takes and returns batches where it is cheap to do so, so a batched engine can
crop N faces at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.types import Affine, Image

CROP_INTERPOLATION = cv2.INTER_LANCZOS4
"""Interpolation for crops into and out of models. On a crop-and-paste round trip of a real face at
the crop's native scale, Lanczos-4 both ways costs 0.9 levels mean against 1.3 (cubic) and 2.7
(bilinear, InsightFace's choice); see tests/geometry/test_align.py."""

_PRESHRINK_BELOW = 0.5
"""Crops that shrink the face more than 2x are first area-averaged (warpAffine alone would alias)."""


def scale_template(template: Sequence[Sequence[float]], from_size: int, to_size: int) -> NDArray[np.float64]:
    """A template declared for a ``from_size`` crop, expressed for a ``to_size`` crop of the same framing.

    Pixel centres, not pixel edges, are what warpAffine maps, so the scale is about the pixel grid's
    origin exactly as InsightFace scales its 112 px template (``arcface_dst * ratio``).
    """
    pts = np.asarray(template, dtype=np.float64).reshape(5, 2)
    return pts * (float(to_size) / float(from_size))


def estimate_similarity(src: NDArray[np.floating], dst: NDArray[np.floating]) -> Affine:
    """Least-squares similarity transform (2x3) mapping ``src`` points onto ``dst`` (Umeyama, no reflection).

    Deterministic (no RANSAC): with five good key points every point should count. Raises
    ``ValueError`` on degenerate input (all points equal).
    """
    s = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if s.shape != d.shape or len(s) < 2:
        raise ValueError(f"need two equal sets of at least 2 points, got {s.shape} and {d.shape}")
    mu_s, mu_d = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - mu_s, d - mu_d
    var_s = (sc**2).sum() / len(s)
    if var_s <= 1e-12:
        raise ValueError("degenerate key points: all points coincide")
    cov = dc.T @ sc / len(s)
    u, sig, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0  # the best orthogonal map would be a reflection; take the best rotation instead
    rot = u @ fix @ vt
    scale = float((sig * np.diag(fix)).sum() / var_s)
    out = np.empty((2, 3), dtype=np.float64)
    out[:, :2] = scale * rot
    out[:, 2] = mu_d - scale * rot @ mu_s
    return out


def affine_scale(affine: Affine) -> float:
    """Uniform scale of a similarity matrix (crop pixels per frame pixel)."""
    a = np.asarray(affine, dtype=np.float64)
    return float(np.sqrt(abs(np.linalg.det(a[:, :2]))))


def invert(affine: Affine) -> Affine:
    """Inverse of a 2x3 affine matrix."""
    return cv2.invertAffineTransform(np.asarray(affine, dtype=np.float64))


def transform_points(points: NDArray[np.floating], affine: Affine) -> NDArray[np.float32]:
    """Apply a 2x3 affine to (N, 2) points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    a = np.asarray(affine, dtype=np.float64)
    return (p @ a[:, :2].T + a[:, 2]).astype(np.float32)


def crop_affine(
    kps5: NDArray[np.floating],
    template: Sequence[Sequence[float]],
    template_size: int,
    crop_size: int | None = None,
) -> Affine:
    """Matrix mapping frame pixels into a ``crop_size`` crop aligned on ``template``.

    ``template`` is declared for ``template_size`` px (the model's input); a larger ``crop_size`` (pixel
    boost) keeps the same framing at a finer pixel grid.
    """
    size = template_size if crop_size is None else crop_size
    return estimate_similarity(kps5, scale_template(template, template_size, size))


def warp_crop(image: Image, affine: Affine, size: int, interpolation: int = CROP_INTERPOLATION) -> Image:
    """The ``size`` x ``size`` crop of ``image`` under ``affine``; outside the frame repeats the edge.

    Replicating the border (rather than InsightFace's black) keeps a face at the frame edge from
    being fed a black band the model would then try to reproduce.
    """
    a = np.asarray(affine, dtype=np.float64)
    scale = affine_scale(a)
    if scale < _PRESHRINK_BELOW:
        box = crop_footprint(a, size, image.shape, margin=int(np.ceil(8 / scale)) + 2)
        if box is not None:
            image, a = _preshrink(image, a, box, scale)
    return cv2.warpAffine(image, a, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def _preshrink(
    image: Image, affine: Affine, box: tuple[int, int, int, int], scale: float
) -> tuple[Image, Affine]:
    """Area-average the part of ``image`` a crop needs down to about the crop's scale.

    Returns the smaller image and the matrix that maps it into the same crop.
    """
    x1, y1, x2, y2 = box
    roi = image[y1:y2, x1:x2]
    w, h = max(round((x2 - x1) * scale), 1), max(round((y2 - y1) * scale), 1)
    small = cv2.resize(roi, (w, h), interpolation=cv2.INTER_AREA)
    sx, sy = w / (x2 - x1), h / (y2 - y1)
    # cv2.resize maps pixel centres: small pixel q sits at roi coordinate (q + 0.5) / s - 0.5.
    to_frame = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + x1], [0, 1 / sy, 0.5 / sy - 0.5 + y1], [0, 0, 1]])
    return small, np.asarray(affine, dtype=np.float64) @ to_frame


def crop_faces(
    image: Image,
    kps: Sequence[NDArray[np.floating]],
    template: Sequence[Sequence[float]],
    template_size: int,
    crop_size: int | None = None,
    interpolation: int = CROP_INTERPOLATION,
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Aligned crops of several faces of one image: (N, S, S, 3) uint8 and their (N, 2, 3) matrices."""
    size = template_size if crop_size is None else crop_size
    if len(kps) == 0:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0, 2, 3))
    affines = np.stack([crop_affine(k, template, template_size, size) for k in kps])
    crops = np.stack([warp_crop(image, a, size, interpolation) for a in affines])
    return crops, affines


def crop_footprint(
    affine: Affine, size: int, frame_shape: tuple[int, ...], margin: int = 2
) -> tuple[int, int, int, int] | None:
    """Integer box (x1, y1, x2, y2), clipped to the frame, that holds the whole crop pasted back.

    ``None`` when the crop lies entirely outside the frame.
    """
    corners = np.array([[-0.5, -0.5], [size - 0.5, -0.5], [size - 0.5, size - 0.5], [-0.5, size - 0.5]])
    pts = transform_points(corners, invert(affine))
    h, w = frame_shape[:2]
    x1 = max(int(np.floor(pts[:, 0].min())) - margin, 0)
    y1 = max(int(np.floor(pts[:, 1].min())) - margin, 0)
    x2 = min(int(np.ceil(pts[:, 0].max())) + margin + 1, w)
    y2 = min(int(np.ceil(pts[:, 1].max())) + margin + 1, h)
    if x2 <= x1 or y2 <= y1:
        return None
    return x1, y1, x2, y2
