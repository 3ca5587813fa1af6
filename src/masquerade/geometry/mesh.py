"""The 468-point MediaPipe face mesh: its triangulation, named contours and a few measures on it.

The tessellation (852 triangles) is derived from ``FACEMESH_TESSELATION`` in MediaPipe's
``face_mesh_connections.py`` (Apache-2.0, see NOTICE): that file lists each triangle as three
consecutive edges ``(a, b), (b, c), (c, a)``; the bundled ``face_mesh_triangles.npy`` keeps them in
that order, so every triangle has the same winding. The mesh has three holes (the two eyes and the
mouth opening); :func:`hole_triangles` closes them with strips between the upper and lower lids/lips.

Index sets name the subject's own sides (``RIGHT_EYE`` is the subject's right eye, on the image's left
for a face looking at the camera). Contours are closed loops in drawing order.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import numpy as np
from numpy.typing import NDArray

N_LANDMARKS = 468

FACE_OVAL: tuple[int, ...] = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)  # fmt: skip

# Lids and lips as (upper, lower) chains that share their two corner points.
_RIGHT_EYE_UPPER = (33, 246, 161, 160, 159, 158, 157, 173, 133)
_RIGHT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
_LEFT_EYE_UPPER = (263, 466, 388, 387, 386, 385, 384, 398, 362)
_LEFT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
_LIPS_INNER_UPPER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_LIPS_INNER_LOWER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
_LIPS_OUTER_UPPER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
_LIPS_OUTER_LOWER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)


def _loop(upper: tuple[int, ...], lower: tuple[int, ...]) -> tuple[int, ...]:
    """Closed contour: along the upper chain, then back along the lower one (corners once)."""
    return upper + tuple(reversed(lower[1:-1]))


RIGHT_EYE: tuple[int, ...] = _loop(_RIGHT_EYE_UPPER, _RIGHT_EYE_LOWER)
LEFT_EYE: tuple[int, ...] = _loop(_LEFT_EYE_UPPER, _LEFT_EYE_LOWER)
LIPS_INNER: tuple[int, ...] = _loop(_LIPS_INNER_UPPER, _LIPS_INNER_LOWER)
LIPS_OUTER: tuple[int, ...] = _loop(_LIPS_OUTER_UPPER, _LIPS_OUTER_LOWER)
FOREHEAD: tuple[int, ...] = (
    127, 162, 21, 54, 103, 67, 109, 10, 338, 297, 332, 284, 251, 389, 356,
    300, 293, 334, 296, 336, 9, 107, 66, 105, 63, 70,
)  # fmt: skip
"""Closed contour of the forehead and temples: the oval's upper arc, then back over the brows' tops."""
NOSE: tuple[int, ...] = (
    168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 97, 326, 327, 294, 278, 344, 440, 275, 45, 220, 115, 48, 64,
)  # fmt: skip
"""Points of the nose (bridge, tip, wings); unordered: draw their convex hull."""
TEMPLES: tuple[tuple[int, ...], tuple[int, ...]] = (
    (70, 46, 226, 234, 127, 162),
    (300, 276, 446, 454, 356, 389),
)
"""Closed contours of the temples beside the brows' tails and the eyes' outer corners, down to the
outline at eye level (right, left): where hair at the side of the head and its shadow reach in."""
SKIN_SAMPLES: tuple[int, ...] = (50, 280, 101, 330, 205, 425, 118, 347, 197, 195, 5)
"""Points on the cheeks and the nose's ridge: bare skin on nearly every face, hair and beards aside."""
RIGHT_EYEBROW: tuple[int, ...] = (46, 53, 52, 65, 55, 107, 66, 105, 63, 70)
LEFT_EYEBROW: tuple[int, ...] = (276, 283, 282, 295, 285, 336, 296, 334, 293, 300)

# (outer corner, inner corner, (upper, lower), (upper, lower)) for the eye aspect ratio.
_EAR_POINTS = {
    "right": (33, 133, (160, 144), (158, 153)),
    "left": (263, 362, (387, 373), (385, 380)),
}
# Left/right symmetric pairs (subject's right first) and a top-to-bottom midline, for head pose.
_SYMMETRIC_PAIRS = ((234, 454), (127, 356), (33, 263), (133, 362), (61, 291), (132, 361), (58, 288))
_MIDLINE_TOP = (10, 151, 9)
_MIDLINE_BOTTOM = (152, 175, 199)


@cache
def tessellation() -> NDArray[np.int32]:
    """(852, 3) triangles of the face mesh, all with the same winding. Read-only."""
    ref = resources.files("masquerade").joinpath("assets", "mediapipe", "face_mesh_triangles.npy")
    with resources.as_file(ref) as path:
        tris = np.load(path, allow_pickle=False).astype(np.int32)
    tris.flags.writeable = False
    return tris


def _strip(upper: tuple[int, ...], lower: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """Triangulate the polygon between two chains that share their end points."""
    tris: list[tuple[int, int, int]] = [(upper[0], upper[1], lower[1])]
    for i in range(1, len(upper) - 2):
        tris.append((upper[i], upper[i + 1], lower[i]))
        tris.append((upper[i + 1], lower[i + 1], lower[i]))
    tris.append((upper[-2], upper[-1], lower[-2]))
    return tris


@cache
def hole_triangles() -> NDArray[np.int32]:
    """(46, 3) triangles closing the eye and mouth holes, wound like :func:`tessellation`. Read-only."""
    strips = (
        _strip(_RIGHT_EYE_UPPER, _RIGHT_EYE_LOWER)
        + _strip(_LEFT_EYE_UPPER, _LEFT_EYE_LOWER)
        + _strip(_LIPS_INNER_UPPER, _LIPS_INNER_LOWER)
    )
    # A hole's rim edges appear once in the mesh, in one direction; a consistently wound triangle on
    # the other side of that edge must run it the other way.
    directed = {(int(t[k]), int(t[(k + 1) % 3])) for t in tessellation() for k in range(3)}
    out = []
    for a, b, c in strips:
        edges = ((a, b), (b, c), (c, a))
        if any(e in directed for e in edges):
            a, b, c = a, c, b
        out.append((a, b, c))
    tris = np.array(out, dtype=np.int32)
    tris.flags.writeable = False
    return tris


MOUTH_FILL = slice(880, 898)
"""Rows of :func:`triangles` that close the mouth opening (after the tessellation and both eyes)."""


@cache
def triangles() -> NDArray[np.int32]:
    """The whole face as triangles: the tessellation plus the eye and mouth holes closed. Read-only."""
    tris = np.concatenate([tessellation(), hole_triangles()])
    tris.flags.writeable = False
    return tris


@cache
def _neighbours() -> tuple[frozenset[int], ...]:
    adjacent: list[set[int]] = [set() for _ in range(N_LANDMARKS)]
    for a, b, c in triangles().tolist():
        adjacent[a] |= {b, c}
        adjacent[b] |= {a, c}
        adjacent[c] |= {a, b}
    return tuple(frozenset(n) for n in adjacent)


def hops(start: tuple[int, ...], blocked: tuple[int, ...] = ()) -> NDArray[np.int32]:
    """Per landmark, the fewest mesh edges from any ``start`` point, not passing ``blocked`` points
    (which get their own distance but are not crossed); -1 where unreachable."""
    dist = np.full(N_LANDMARKS, -1, dtype=np.int32)
    frontier = list(dict.fromkeys(start))
    dist[frontier] = 0
    stop = set(blocked)
    step = 0
    while frontier:
        step += 1
        nxt = []
        for i in frontier:
            if i in stop and step > 1:
                continue
            for j in _neighbours()[i]:
                if dist[j] < 0:
                    dist[j] = step
                    nxt.append(j)
        frontier = [j for j in nxt if j not in stop]
    return dist


@cache
def lip_points() -> tuple[int, ...]:
    """Every landmark on the lips: the outer and inner contours and the rings between them."""
    inside = hops(LIPS_INNER, blocked=LIPS_OUTER)
    return tuple(int(i) for i in np.nonzero(inside >= 0)[0])


def eye_aspect_ratio(landmarks: NDArray[np.floating], side: str) -> float:
    """Lid opening over eye width (about 0.25-0.35 open, under ~0.12 closed); side ``right``/``left``."""
    outer, inner, (u1, l1), (u2, l2) = _EAR_POINTS[side]
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    width = np.linalg.norm(pts[outer] - pts[inner])
    if width <= 1e-6:
        return 0.0
    opening = np.linalg.norm(pts[u1] - pts[l1]) + np.linalg.norm(pts[u2] - pts[l2])
    return float(opening / (2.0 * width))


def mouth_open_ratio(landmarks: NDArray[np.floating]) -> float:
    """Inner-lip opening over mouth width (0 when the lips touch)."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    width = np.linalg.norm(pts[78] - pts[308])
    return float(np.linalg.norm(pts[13] - pts[14]) / width) if width > 1e-6 else 0.0


def head_pose(landmarks: NDArray[np.floating]) -> tuple[float, float]:
    """(yaw, pitch) in degrees from the mesh's 3-D landmarks; 0, 0 faces the camera.

    Yaw comes from how far the line through left/right symmetric points leaves the image plane, pitch
    from the forehead-to-chin line. The signs depend on the landmark z convention; callers that rank
    faces should use magnitudes.
    """
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.ndim != 2 or lm.shape[0] < N_LANDMARKS or lm.shape[1] < 3:
        raise ValueError(f"head_pose needs (468, 3) landmarks, got {lm.shape}")
    left = lm[[p[1] for p in _SYMMETRIC_PAIRS], :3]
    right = lm[[p[0] for p in _SYMMETRIC_PAIRS], :3]
    x_axis = (left - right).sum(axis=0)
    y_axis = lm[list(_MIDLINE_BOTTOM), :3].mean(axis=0) - lm[list(_MIDLINE_TOP), :3].mean(axis=0)
    x_axis /= max(np.linalg.norm(x_axis), 1e-9)
    y_axis -= x_axis * float(y_axis @ x_axis)  # make it orthogonal to the left-right axis
    y_axis /= max(np.linalg.norm(y_axis), 1e-9)
    yaw = np.degrees(np.arcsin(np.clip(x_axis[2], -1.0, 1.0)))
    pitch = np.degrees(np.arcsin(np.clip(y_axis[2], -1.0, 1.0)))
    return float(yaw), float(pitch)


def facing(landmarks: NDArray[np.floating], tris: NDArray[np.int32]) -> NDArray[np.float64]:
    """Per triangle, the cosine between its 3-D normal and the view axis (1 = faces the camera,
    0 = seen edge-on, negative = facing away)."""
    p = np.asarray(landmarks, dtype=np.float64)[:, :3][tris]
    normal = np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0])
    cos = normal[:, 2] / np.maximum(np.linalg.norm(normal, axis=1), 1e-9)
    # The winding is shared by all triangles; most of a face looks at the camera, which fixes the sign.
    return cos * (1.0 if np.sum(np.sign(cos)) >= 0 else -1.0)


def pose_like(points: NDArray[np.float64], reference: NDArray[np.float64]) -> NDArray[np.float64]:
    """``points`` (N, 3) moved by the least-squares similarity onto ``reference`` (Umeyama 1991)."""
    mu_p, mu_r = points.mean(axis=0), reference.mean(axis=0)
    p, r = points - mu_p, reference - mu_r
    u, sv, vt = np.linalg.svd(r.T @ p)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u @ vt)) or 1.0  # a rotation, never a mirror
    rot = (u * d) @ vt
    scale = float((sv * d).sum() / max((p**2).sum(), 1e-9))
    return (scale * (rot @ p.T)).T + mu_r


def triangle_affines(
    dst: NDArray[np.floating], src: NDArray[np.floating], tris: NDArray[np.int32]
) -> NDArray[np.float64]:
    """(T, 6) coefficients ``a, b, c, d, e, f`` of the affine map ``(x, y) -> (ax + by + c, dx + ey + f)``
    taking each triangle of ``dst`` onto the same triangle of ``src`` (points (N, 2))."""
    d = np.asarray(dst, dtype=np.float64)[tris]  # (T, 3, 2)
    s = np.asarray(src, dtype=np.float64)[tris]
    # Closed form (Cramer's rule) for all triangles at once: about 10x a stacked np.linalg.solve.
    e1, e2 = d[:, 1] - d[:, 0], d[:, 2] - d[:, 0]  # (T, 2) edge vectors in dst
    f1, f2 = s[:, 1] - s[:, 0], s[:, 2] - s[:, 0]  # the same edges in src
    det = e1[:, 0] * e2[:, 1] - e2[:, 0] * e1[:, 1]
    degenerate = np.abs(det) < 1e-6
    inv = np.where(degenerate, 0.0, 1.0 / np.where(degenerate, 1.0, det))  # no pixel is drawn for a
    # zero-area triangle: any finite map will do (here the constant map onto its first corner)
    gx = (f1 * e2[:, 1:2] - f2 * e1[:, 1:2]) * inv[:, None]  # d(src)/dx, (T, 2)
    gy = (f2 * e1[:, 0:1] - f1 * e2[:, 0:1]) * inv[:, None]  # d(src)/dy
    offset = s[:, 0] - gx * d[:, 0, 0:1] - gy * d[:, 0, 1:2]
    return np.column_stack([gx[:, 0], gy[:, 0], offset[:, 0], gx[:, 1], gy[:, 1], offset[:, 1]])
