"""The face-mesh triangulation and index sets: a consistent surface that matches MediaPipe's edges."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from masquerade.geometry import mesh

MEDIAPIPE_CONNECTIONS = Path("/tmp/wheels/mp/mediapipe/python/solutions/face_mesh_connections.py")


def _directed_edges(tris: np.ndarray) -> Counter:
    return Counter((int(t[k]), int(t[(k + 1) % 3])) for t in tris for k in range(3))


def _undirected_edges(tris: np.ndarray) -> Counter:
    return Counter(frozenset((int(t[k]), int(t[(k + 1) % 3]))) for t in tris for k in range(3))


def test_tessellation_is_a_consistent_mesh_with_three_holes() -> None:
    tris = mesh.tessellation()
    assert tris.shape == (852, 3)
    assert tris.min() == 0 and tris.max() == mesh.N_LANDMARKS - 1
    assert len(np.unique(tris)) == mesh.N_LANDMARKS  # every landmark belongs to a triangle
    assert all(len(set(t)) == 3 for t in tris.tolist())
    assert len({tuple(sorted(t)) for t in tris.tolist()}) == len(tris)  # no duplicates
    edges = _undirected_edges(tris)
    assert max(edges.values()) == 2  # a manifold: no edge shared by three triangles
    # Same winding everywhere: each shared edge is run once in each direction.
    assert max(_directed_edges(tris).values()) == 1
    # Euler characteristic V - E + F = 1 - holes: a disc with the two eyes and the mouth open.
    assert mesh.N_LANDMARKS - len(edges) + len(tris) == 1 - 3
    boundary = {e for e, n in edges.items() if n == 1}
    rims = [mesh.FACE_OVAL, mesh.RIGHT_EYE, mesh.LEFT_EYE, mesh.LIPS_INNER]
    rim_edges = {frozenset((c[i], c[(i + 1) % len(c)])) for c in rims for i in range(len(c))}
    assert boundary == rim_edges


def test_holes_closed_gives_a_disc_bounded_by_the_face_oval() -> None:
    tris = mesh.triangles()
    assert 852 < len(tris) <= 900
    assert len(mesh.hole_triangles()) == 14 + 14 + 18
    assert max(_directed_edges(tris).values()) == 1  # fill triangles wound like the rest
    edges = _undirected_edges(tris)
    assert mesh.N_LANDMARKS - len(edges) + len(tris) == 1
    boundary = {e for e, n in edges.items() if n == 1}
    oval = mesh.FACE_OVAL
    assert boundary == {frozenset((oval[i], oval[(i + 1) % len(oval)])) for i in range(len(oval))}


def test_mouth_fill_rows_close_the_mouth() -> None:
    rows = mesh.triangles()[mesh.MOUTH_FILL]
    assert len(rows) == 18
    assert set(rows.ravel().tolist()) == set(mesh.LIPS_INNER)


def test_hops_and_lip_points() -> None:
    dist = mesh.hops((1,))  # from the nose tip
    assert dist[1] == 0 and dist.min() == 0 and np.all(dist >= 0)  # one connected mesh
    assert all(dist[n] == 1 for n in mesh._neighbours()[1])
    lips = set(mesh.lip_points())
    assert set(mesh.LIPS_OUTER) <= lips and set(mesh.LIPS_INNER) <= lips
    assert 60 <= len(lips) <= 90  # the contours and the rings between them, nothing more
    assert not lips & set(mesh.NOSE) and not lips & set(mesh.FACE_OVAL)
    blocked = mesh.hops(mesh.LIPS_INNER, blocked=mesh.LIPS_OUTER)
    assert np.all(blocked[list(mesh.LIPS_OUTER)] >= 0) and blocked[1] == -1


def test_pose_like_undoes_a_similarity(mesh_faces) -> None:
    pts = mesh_faces["obama"].landmarks.astype(np.float64)
    a = np.radians(20)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    other = 0.7 * pts @ rot.T + [40, -15, 3]
    assert np.allclose(mesh.pose_like(other, pts), pts, atol=1e-6)
    mirrored = other * [-1, 1, 1]  # a mirror is not a pose: the fit stays a rotation
    assert not np.allclose(mesh.pose_like(mirrored, pts), pts, atol=1.0)


def test_triangle_affines_map_vertices_onto_vertices() -> None:
    rng = np.random.default_rng(0)
    dst, src = rng.uniform(0, 100, (468, 2)), rng.uniform(0, 100, (468, 2))
    tris = mesh.triangles()
    c = mesh.triangle_affines(dst, src, tris)
    for k in range(3):
        x, y = dst[tris[:, k], 0], dst[tris[:, k], 1]
        mapped = np.stack([c[:, 0] * x + c[:, 1] * y + c[:, 2], c[:, 3] * x + c[:, 4] * y + c[:, 5]], axis=1)
        assert np.allclose(mapped, src[tris[:, k]], atol=1e-6)


def test_facing_on_real_and_turned_faces(mesh_faces) -> None:
    lm = mesh_faces["obama"].landmarks
    cos = mesh.facing(lm, mesh.tessellation())
    assert np.median(cos) > 0.6  # a frontal face mostly looks at the camera
    nose = [i for i, t in enumerate(mesh.tessellation().tolist()) if set(t) <= set(mesh.NOSE)]
    flipped = lm * np.float32([-1, 1, 1])  # mirror image: same facing, winding reversed
    assert np.allclose(mesh.facing(flipped, mesh.tessellation())[nose], cos[nose], atol=1e-5)


def test_arrays_are_read_only() -> None:
    with pytest.raises(ValueError):
        mesh.triangles()[0, 0] = 1


@pytest.mark.skipif(not MEDIAPIPE_CONNECTIONS.exists(), reason="MediaPipe's source file is not unpacked here")
def test_triangles_match_mediapipe_tessellation_edges() -> None:
    text = MEDIAPIPE_CONNECTIONS.read_text()
    body = text[text.index("FACEMESH_TESSELATION") :]
    pairs = [(int(a), int(b)) for a, b in re.findall(r"\((\d+),\s*(\d+)\)", body)]
    assert {frozenset(p) for p in pairs} == set(_undirected_edges(mesh.tessellation()))
    # Listed as (a, b), (b, c), (c, a): the asset keeps those triangles in that order and winding.
    listed = [(pairs[i][0], pairs[i + 1][0], pairs[i + 2][0]) for i in range(0, len(pairs), 3)]
    assert np.array_equal(np.array(listed), mesh.tessellation())


def test_contours_are_closed_loops_of_mesh_edges() -> None:
    edges = set(_undirected_edges(mesh.triangles()))
    for contour in (mesh.FACE_OVAL, mesh.LIPS_INNER, mesh.LIPS_OUTER, mesh.RIGHT_EYE, mesh.LEFT_EYE):
        assert len(set(contour)) == len(contour)
        loop = {frozenset((contour[i], contour[(i + 1) % len(contour)])) for i in range(len(contour))}
        assert loop <= edges, contour


@pytest.fixture(scope="module")
def mesh_faces(obama, obama2, biden, astronaut):
    from masquerade._stages.detect import MeshAnalyser

    analyser = MeshAnalyser()
    return {name: analyser.detect(img)[0] for name, img in
            {"obama": obama, "obama2": obama2, "biden": biden, "astronaut": astronaut}.items()}


def test_measures_on_real_faces(mesh_faces) -> None:
    obama, obama2, biden = mesh_faces["obama"], mesh_faces["obama2"], mesh_faces["biden"]
    # All four have open eyes; obama2 speaks with an open mouth, biden's lips are closed.
    for face in mesh_faces.values():
        for side in ("right", "left"):
            assert 0.15 < mesh.eye_aspect_ratio(face.landmarks, side) < 0.45
    assert mesh.mouth_open_ratio(obama2.landmarks) > 0.3
    assert mesh.mouth_open_ratio(biden.landmarks) < 0.05
    # obama looks straight at the camera; obama2 is turned by about 15 degrees.
    yaw, pitch = mesh.head_pose(obama.landmarks)
    assert abs(yaw) < 6 and abs(pitch) < 8
    assert 8 < abs(mesh.head_pose(obama2.landmarks)[0]) < 25


def test_closed_eye_and_turned_head_measures() -> None:
    lm = np.zeros((468, 3), np.float32)
    # A flat synthetic face: eye corners 30 px apart, lids 2 px apart (closed).
    for side, (outer, inner, (u1, l1), (u2, l2)) in mesh._EAR_POINTS.items():
        x0 = 0.0 if side == "right" else 60.0
        lm[outer, :2], lm[inner, :2] = (x0, 0), (x0 + 30, 0)
        lm[u1, :2], lm[l1, :2] = (x0 + 10, -1), (x0 + 10, 1)
        lm[u2, :2], lm[l2, :2] = (x0 + 20, -1), (x0 + 20, 1)
        assert mesh.eye_aspect_ratio(lm, side) == pytest.approx(2 / 30)
    with pytest.raises(ValueError):
        mesh.head_pose(lm[:, :2])
