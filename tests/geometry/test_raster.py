"""The mesh rasteriser: one id per pixel, no cracks, later triangles over earlier ones."""

from __future__ import annotations

import cv2
import numpy as np

from masquerade.geometry import mesh
from masquerade.geometry.raster import triangle_ids


def _grid_mesh(n: int, cell: float, jitter: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A jittered n x n grid of points split into 2 (n - 1)^2 triangles."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float64)
    points = np.column_stack([xs.ravel(), ys.ravel()]) * cell + 3.0
    inner = (xs.ravel() > 0) & (xs.ravel() < n - 1) & (ys.ravel() > 0) & (ys.ravel() < n - 1)
    points[inner] += rng.uniform(-jitter, jitter, (int(inner.sum()), 2))
    tris = []
    for y in range(n - 1):
        for x in range(n - 1):
            i = y * n + x
            tris += [(i, i + 1, i + n), (i + 1, i + n + 1, i + n)]
    return points, np.array(tris)


def test_a_tiled_square_has_no_cracks_and_matches_opencv() -> None:
    points, tris = _grid_mesh(9, 7.3, 2.5)
    ids = triangle_ids((64, 64), points, tris, np.arange(len(tris)))
    inside = np.zeros((64, 64), np.uint8)
    hull = np.round(cv2.convexHull(points.astype(np.float32)).reshape(-1, 2) * 16).astype(np.int32)
    cv2.fillConvexPoly(inside, hull, 1, cv2.LINE_8, 4)
    assert np.all(ids[inside > 0] >= 0)  # every pixel of the square is drawn: no cracks between triangles
    drawn = np.full((64, 64), -1, np.int32)
    fixed = np.round(points * 16).astype(np.int32)
    for t in range(len(tris)):
        cv2.fillConvexPoly(drawn, fixed[tris[t]], t, cv2.LINE_8, 4)
    both = (ids >= 0) | (drawn >= 0)
    assert np.mean((ids >= 0) == (drawn >= 0)) > 0.99  # the same outline as OpenCV's polygons
    # Away from the edges every pixel names the triangle its centre lies in.
    centre = np.zeros_like(inside)
    for t in range(len(tris)):
        mask = np.zeros_like(inside)
        cv2.fillConvexPoly(mask, fixed[tris[t]], 1, cv2.LINE_8, 4)
        centre += cv2.erode(mask, np.ones((3, 3), np.uint8))
    interior = (centre == 1) & both
    assert np.array_equal(ids[interior], drawn[interior])


def test_later_triangles_are_drawn_over_earlier_ones_and_flat_ones_draw_nothing() -> None:
    points = np.array([[2, 2], [30, 2], [2, 30], [8, 8], [20, 8], [8, 20], [5, 5], [20, 20], [35, 35.0]])
    tris = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8]])  # the last is a straight line
    near_last = triangle_ids((40, 40), points, tris, np.array([0, 1, 2]))
    assert near_last[12, 12] == 1 and near_last[4, 4] == 0 and near_last[30, 30] == -1
    far_last = triangle_ids((40, 40), points, tris, np.array([1, 0]))
    assert far_last[12, 12] == 0 and np.count_nonzero(far_last == 1) == 0
    # Points outside the image are clipped, not wrapped.
    off = triangle_ids((40, 40), points - 100.0, tris, np.array([0, 1]))
    assert np.all(off == -1)


def test_a_real_face_mesh_draws_like_opencv(obama2) -> None:
    """A real 468-point mesh at the swapper's work size (about 128 px), drawn far to near: the same
    outline as OpenCV's polygons within a pixel's width, the same id on most pixels."""
    from masquerade._stages.detect import MeshAnalyser

    (face,) = MeshAnalyser().detect(obama2)
    tris = mesh.triangles()
    pts = (face.landmarks[:, :2] - face.landmarks[:, :2].min(axis=0)) * (128.0 / face.size) + 6
    order = np.argsort(-face.landmarks[:, 2][tris].mean(axis=1))
    shape = tuple(int(v) for v in np.ceil(pts.max(axis=0) + 6))
    ids = triangle_ids(shape, pts, tris, order)
    drawn = np.full(ids.shape, -1, np.int32)
    fixed = np.round(pts * 16).astype(np.int32)
    for t in order.tolist():
        cv2.fillConvexPoly(drawn, fixed[tris[t]], t, cv2.LINE_8, 4)
    assert np.mean((ids >= 0) == (drawn >= 0)) > 0.99
    either = (ids >= 0) | (drawn >= 0)
    assert np.mean(ids[either] == drawn[either]) > 0.9  # the rest: pixels on a shared edge
