"""Rasterising a triangle mesh into an id image, all triangles at once (no per-triangle loop)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

EDGE_REACH = 0.5
"""A pixel belongs to a triangle when its centre lies inside or at most this far (px) outside every
edge: neighbours overlap slightly instead of leaving cracks, and the outline is drawn as generously as
OpenCV's filled polygons draw it."""
SLIVER_REACH = 0.5
"""... but never farther outside an edge than this share of the triangle's height over it. A sliver (the
side of a nose seen edge-on, a fraction of a pixel thick) would otherwise claim pixels many times its
own thickness away, and a map made from its corners (a piecewise-affine warp) extrapolates to them far
off its triangle: -410 px on the bundled clip, black specks beside the nostril. Its neighbours cover
those pixels anyway."""


def triangle_ids(
    shape: tuple[int, int], points: NDArray[np.floating], triangles: NDArray[np.integer],
    order: NDArray[np.integer],
) -> NDArray[np.int32]:
    """Triangle id at each pixel of a (width, height) ``shape``, -1 where none is drawn.

    ``points`` are (N, 2) pixel coordinates (pixel centres at whole numbers), ``triangles`` (T, 3)
    indices into them, ``order`` the ids to draw, first to last: where triangles overlap the later one
    wins (draw far to near for a folded mesh). Degenerate (zero-area) triangles draw nothing.
    """
    w, h = shape
    ids = np.full((h, w), -1, dtype=np.int32)
    order = np.asarray(order, dtype=np.int64)
    if order.size == 0 or w <= 0 or h <= 0:
        return ids
    corners = np.asarray(points, dtype=np.float64)[np.asarray(triangles)[order]]  # (T, 3, 2)
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    keep = np.abs(area) > 1e-9
    lo = np.floor(np.minimum(np.minimum(a, b), c) - EDGE_REACH).astype(np.int64)
    hi = np.ceil(np.maximum(np.maximum(a, b), c) + EDGE_REACH).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.array([w - 1, h - 1]))
    keep &= np.all(hi >= lo, axis=1)
    if not keep.any():
        return ids
    rank = np.flatnonzero(keep)
    a, b, c, lo, hi, sign = a[keep], b[keep], c[keep], lo[keep], hi[keep], np.sign(area[keep])
    # Scanlines: every row of every triangle's bounding box.
    rows = hi[:, 1] - lo[:, 1] + 1
    tri = np.repeat(np.arange(rank.size), rows)
    ys = lo[tri, 1] + np.arange(int(rows.sum())) - np.repeat(np.cumsum(rows) - rows, rows)
    left = lo[tri, 0].astype(np.float64)
    right = hi[tri, 0].astype(np.float64)
    # Each edge as a signed distance nx*x + ny*y + nc, positive inside (whatever the winding), bounds
    # the row's span from the left (nx > 0) or the right (nx < 0), or keeps or drops it whole.
    doubled = np.abs(area[keep])  # twice the area: the height over an edge is doubled / length
    for p, q in ((a, b), (b, c), (c, a)):
        d = q - p
        length = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12)
        nx, ny = -d[:, 1] * sign / length, d[:, 0] * sign / length
        reach = np.minimum(EDGE_REACH, SLIVER_REACH * doubled / length)
        nc = -(nx * p[:, 0] + ny * p[:, 1]) + reach
        nx, rest = nx[tri], ny[tri] * ys + nc[tri]  # inside: nx * x + rest >= 0
        flat = np.abs(nx) < 1e-12
        bound = -rest / np.where(flat, 1.0, nx)
        left = np.where(nx > 0, np.maximum(left, bound), left)
        right = np.where(nx < 0, np.minimum(right, bound), right)
        right = np.where(flat & (rest < 0), -1.0, right)
    start = np.ceil(left - 1e-9).astype(np.int64)
    counts = np.maximum(np.floor(right + 1e-9).astype(np.int64) - start + 1, 0)
    first = np.cumsum(counts) - counts
    pixel = np.repeat(ys * w + start - first, counts) + np.arange(int(counts.sum()))
    drawn = np.repeat(rank[tri], counts)
    # The last drawn triangle wins each pixel.
    best = np.full(w * h, -1, dtype=np.int64)
    np.maximum.at(best, pixel, drawn)
    hit = best >= 0
    ids.reshape(-1)[hit] = order[best[hit]]
    return ids


__all__ = ["EDGE_REACH", "SLIVER_REACH", "triangle_ids"]
