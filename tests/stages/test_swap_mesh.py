"""The classical mesh swapper on the bundled photos: identity moves, only the face changes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from masquerade._stages import blend
from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.swap_mesh import (
    _ROI_PAD,
    OUTLINE_BLEND,
    OUTLINE_TURN_POWER,
    SHAPE_BLEND,
    WARP_ZONE,
    MeshSwapper,
    frontality,
)
from masquerade.config import SwapOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.geometry import mesh
from masquerade.geometry.raster import SLIVER_REACH
from masquerade.types import Face

PAIRS = (("obama", "biden"), ("biden", "obama2"), ("astronaut", "obama"), ("obama", "astronaut"))


@pytest.fixture(scope="module")
def faces(photos) -> dict[str, Face]:
    analyser = MeshAnalyser()
    found = {name: analyser.detect(image) for name, image in photos.items()}
    assert all(len(f) == 1 for f in found.values())
    return {name: f[0] for name, f in found.items()}


BEYOND_WARP = _ROI_PAD + WARP_ZONE + 0.05
"""Face sizes from the landmarks' box beyond which no pixel may change (the surroundings follow the
moved outline only within the warp zone)."""


@pytest.fixture(scope="module")
def swapper() -> MeshSwapper:
    return MeshSwapper()


@pytest.fixture(scope="module")
def unshaped() -> MeshSwapper:
    """A swapper that keeps the target's shape (no warp): the kept eyes and mouth stay pixel for pixel."""
    plain = MeshSwapper()
    plain._inner_weight = np.zeros_like(plain._inner_weight)
    plain._outline_weight = np.zeros_like(plain._outline_weight)
    return plain


@pytest.fixture(scope="module")
def swaps(photos, faces, swapper) -> dict[tuple[str, str], np.ndarray]:
    return {
        (s, t): swapper.swap(photos[t], faces[t], swapper.prepare([(photos[s], faces[s])]))
        for s, t in PAIRS
    }


def _outside(face: Face, shape: tuple[int, ...], margin: float = BEYOND_WARP) -> np.ndarray:
    """Boolean mask of the pixels further than ``margin`` face sizes from the landmarks' box."""
    pts = face.landmarks[:, :2]
    pad = margin * face.size
    (x0, y0), (x1, y1) = np.floor(pts.min(0) - pad).astype(int), np.ceil(pts.max(0) + pad).astype(int)
    keep = np.ones(shape[:2], bool)
    keep[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = False
    return keep


def test_frontality_ranks_a_frontal_face_above_a_turned_one(faces) -> None:
    front, turned = frontality(faces["obama"].landmarks), frontality(faces["obama2"].landmarks)
    assert 0.97 < front <= 1.0
    assert turned < front - 0.02


def test_prepare_picks_the_most_frontal_source(photos, faces, swapper) -> None:
    source = swapper.prepare([(photos["obama2"], faces["obama2"]), (photos["obama"], faces["obama"])])
    assert source.face is faces["obama"]
    assert source.landmarks.shape == (468, 3)
    assert source.levels[0][0].shape[2] == 4  # BGR + the source's own-skin alpha
    assert source.eyes_open and source.mouth_open > 0.2  # a broad smile


def test_prepare_without_landmarks_raises(photos, faces, swapper) -> None:
    bare = Face(bbox=faces["obama"].bbox, kps5=faces["obama"].kps5)
    with pytest.raises(NoSourceFaceError):
        swapper.prepare([(photos["obama"], bare)])
    with pytest.raises(NoSourceFaceError):
        swapper.prepare([])


def test_swap_needs_landmarks(photos, faces, swapper) -> None:
    source = swapper.prepare([(photos["obama"], faces["obama"])])
    bare = Face(bbox=faces["biden"].bbox, kps5=faces["biden"].kps5)
    with pytest.raises(UsageError):
        swapper.swap(photos["biden"], bare, source)


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_pixels_away_from_the_face_are_unchanged(photos, faces, swaps, src, dst) -> None:
    out, target = swaps[(src, dst)], photos[dst]
    assert out.shape == target.shape and out.dtype == np.uint8
    # Beyond the warp zone the background keeps every byte...
    away = _outside(faces[dst], target.shape)
    assert np.array_equal(out[away], target[away])
    # ...while inside it, outside the face, the surroundings moved with the outline (jaw, hair, ears).
    oval = blend.polygon_mask(target.shape, [faces[dst].landmarks[list(mesh.FACE_OVAL), :2]])
    around = ~away & (blend.dilate(oval, round(0.05 * faces[dst].size)) == 0)
    assert np.count_nonzero(np.any(out[around] != target[around], axis=1)) > 100
    # ...while the face itself did change, and a lot.
    x0, y0, x1, y1 = faces[dst].bbox.astype(int)
    diff = np.abs(out[y0:y1, x0:x1].astype(int) - target[y0:y1, x0:x1]).mean()
    assert diff > 5


def test_identity_moves_towards_the_source(photos, faces, swaps) -> None:
    from masquerade._stages.recognize import DlibRecognizer

    recognizer = DlibRecognizer()
    for src, dst in PAIRS:
        source = recognizer.embed(photos[src], faces[src])
        before = recognizer.distance(recognizer.embed(photos[dst], faces[dst]), source)
        after = recognizer.distance(recognizer.embed(swaps[(src, dst)], faces[dst]), source)
        # Measured: 0.61 -> 0.35, 0.59 -> 0.41, 0.60 -> 0.42, 0.60 -> 0.41 (same person: ~0.3).
        assert after < before - 0.08, (src, dst, before, after)


def _turned(landmarks: np.ndarray, degrees: float) -> np.ndarray:
    """The 3-D mesh turned about the vertical axis through its centre (yaw)."""
    centre = landmarks.mean(axis=0)
    x, y, z = (landmarks - centre).T
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return (np.stack([c * x + s * z, y, c * z - s * x], axis=1) + centre).astype(np.float32)


@pytest.mark.parametrize("yaw", [0.0, 45.0])
def test_shape_moves_outline_and_inner_face_to_the_source_not_the_lips(photos, faces, swapper, yaw) -> None:
    target = _turned(faces["biden"].landmarks, yaw)
    source = swapper.prepare([(photos["obama"], faces["obama"])])
    shaped = swapper._shaped(target, source)
    lips = list(mesh.lip_points())
    assert np.array_equal(shaped[lips], target[lips, :2])  # the kept mouth still fits
    posed = mesh.pose_like(source.landmarks.astype(np.float64), target.astype(np.float64))[:, :2]
    oval, inner = list(mesh.FACE_OVAL), list(mesh.RIGHT_EYE + mesh.LEFT_EYE + mesh.NOSE)
    # Each point goes its share of the way to the source's (posed like the target): the outline
    # OUTLINE_BLEND (less as the head turns), the inner face SHAPE_BLEND (a little less where it fades
    # towards the lips).
    share = np.linalg.norm(shaped - target[:, :2], axis=1) / np.maximum(
        np.linalg.norm(posed - target[:, :2], axis=1), 1e-6)
    outline = OUTLINE_BLEND * frontality(target) ** OUTLINE_TURN_POWER
    assert np.median(share[oval]) == pytest.approx(outline, abs=0.02)
    # A turned head's outline is its silhouette: moved in as far as a frontal one's, it showed the
    # backdrop inside the target's old outline (grey edges on small turned faces).
    assert (outline < 0.7 * OUTLINE_BLEND) == (yaw > 30)
    assert np.median(share[inner]) == pytest.approx(SHAPE_BLEND, abs=0.05)
    assert np.linalg.norm(shaped - target[:, :2], axis=1)[inner].mean() > 0.005 * faces["biden"].size


def _fine_detail(image: np.ndarray, face: Face) -> float:
    """Robust std of what a 1-px blur removes from the lightness of the bare cheeks and forehead."""
    lightness = blend.to_lab(image)[..., 0]
    fine = lightness - cv2.GaussianBlur(lightness, (0, 0), 1.0)
    lm = face.landmarks[:, :2]
    skin = blend.erode(blend.polygon_mask(image.shape, [lm[list(mesh.FACE_OVAL)]]), round(0.12 * face.size))
    features = [lm[list(ix)] for ix in (mesh.RIGHT_EYE, mesh.LEFT_EYE, mesh.LIPS_OUTER,
                                        mesh.RIGHT_EYEBROW, mesh.LEFT_EYEBROW)]
    skin[blend.polygon_mask(image.shape, features, grow=round(0.04 * face.size)) > 0] = 0
    values = fine[skin > 0]
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def test_a_stretched_source_gets_the_targets_grain(photos, faces, swaps) -> None:
    # The astronaut's 100-px face stretched over obama's 266-px one is smooth; grain makes up for it.
    target = _fine_detail(photos["obama"], faces["obama"])
    swapped = _fine_detail(swaps[("astronaut", "obama")], faces["obama"])
    assert 0.7 * target < swapped < 1.4 * target


def test_grain_holds_still_from_frame_to_frame(photos, faces, swapper, swaps) -> None:
    # The next frame of a still shot: the same picture with a little sensor noise. Fresh grain per
    # frame would change the face by ~3 grey levels on every frame (flicker); the face's own does not.
    target, face = photos["obama"], faces["obama"]
    following = target.copy()
    following[::7, ::5] ^= 1
    again = swapper.swap(following, face, swapper.prepare([(photos["astronaut"], faces["astronaut"])]))
    x0, y0, x1, y1 = face.bbox.astype(int)
    inner = (slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    assert np.abs(again[inner].astype(int) - swaps[("astronaut", "obama")][inner]).mean() < 0.5


def test_grain_turns_with_the_face(photos, faces, swapper) -> None:
    # A face that turns in the picture (a roll of 4 degrees about its nose) keeps its grain on its
    # skin: the grain of the rolled frame is the rolled grain. Grain anchored on the image (or on one
    # landmark) slides under the skin instead, a new pattern on every frame: flicker.
    target, face = photos["obama"], faces["obama"]
    roll = cv2.getRotationMatrix2D(tuple(float(v) for v in face.landmarks[4, :2]), 4.0, 1.0)
    turn = lambda image: cv2.warpAffine(image, roll, image.shape[1::-1], flags=cv2.INTER_LINEAR)  # noqa: E731
    points = face.landmarks.copy()
    points[:, :2] = points[:, :2] @ roll[:, :2].T + roll[:, 2]
    rolled = Face(bbox=face.bbox, kps5=face.kps5, landmarks=points)
    smooth = MeshSwapper()
    smooth._noise = np.zeros_like(smooth._noise)
    source = swapper.prepare([(photos["astronaut"], faces["astronaut"])])

    def grain(image: np.ndarray, at: Face) -> np.ndarray:
        grainy, plain = (blend.to_lab(s.swap(image, at, source))[..., 0] for s in (swapper, smooth))
        return grainy - plain

    x0, y0, x1, y1 = face.bbox.astype(int)
    inner = (slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    expected, found = turn(grain(target, face))[inner].ravel(), grain(turn(target), rolled)[inner].ravel()
    assert found.std() > 1.0  # there is grain to follow
    assert np.corrcoef(expected, found)[0, 1] > 0.4  # measured 0.60; grain anchored on the image: 0.02


def test_open_mouth_interior_stays_the_targets(photos, faces, swaps) -> None:
    target, face = photos["obama2"], faces["obama2"]  # speaking: teeth and tongue show
    inner = blend.erode(blend.polygon_mask(target.shape, [face.landmarks[list(mesh.LIPS_INNER), :2]]), 2)
    assert np.count_nonzero(inner) > 500
    out = swaps[("biden", "obama2")]
    assert np.array_equal(out[inner > 0], target[inner > 0])
    # Without keep_mouth the source's (closed) mouth is stretched over the opening.
    plain = MeshSwapper(SwapOptions(keep_mouth=False))
    other = plain.swap(target, face, plain.prepare([(photos["biden"], faces["biden"])]))
    assert np.abs(other[inner > 0].astype(int) - target[inner > 0]).mean() > 10


def test_eyes_stay_the_targets_when_the_source_eyes_are_closed(photos, faces, unshaped) -> None:
    swapper = unshaped
    lm = faces["obama"].landmarks.copy()
    lids = ((mesh._RIGHT_EYE_UPPER, mesh._RIGHT_EYE_LOWER), (mesh._LEFT_EYE_UPPER, mesh._LEFT_EYE_LOWER))
    for upper, lower in lids:
        lm[list(upper[1:-1])] = lm[list(lower[1:-1])]  # lids shut
    closed = faces["obama"].with_(landmarks=lm)
    source = swapper.prepare([(photos["obama"], closed)])
    assert not source.eyes_open
    target, face = photos["biden"], faces["biden"]
    out = swapper.swap(target, face, source)
    for eye in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        inside = blend.erode(blend.polygon_mask(target.shape, [face.landmarks[list(eye), :2]]), 1)
        assert np.count_nonzero(inside) > 50
        assert np.array_equal(out[inside > 0], target[inside > 0])


def test_closed_target_eyes_stay_the_targets(photos, faces, unshaped) -> None:
    swapper = unshaped
    # Lids at 30 % of their opening: a blink on its way (eye aspect ratio well under the threshold).
    lm = faces["biden"].landmarks.copy()
    lids = ((mesh._RIGHT_EYE_UPPER, mesh._RIGHT_EYE_LOWER), (mesh._LEFT_EYE_UPPER, mesh._LEFT_EYE_LOWER))
    for upper, lower in lids:
        up, low = list(upper[1:-1]), list(lower[1:-1])
        lm[up] = lm[low] + 0.3 * (lm[up] - lm[low])
    assert mesh.eye_aspect_ratio(lm, "right") < 0.13
    face = faces["biden"].with_(landmarks=lm)
    target = photos["biden"]
    out = swapper.swap(target, face, swapper.prepare([(photos["obama"], faces["obama"])]))
    for eye in (mesh.RIGHT_EYE, mesh.LEFT_EYE):
        inside = blend.polygon_mask(target.shape, [lm[list(eye), :2]])
        assert np.count_nonzero(inside) > 50
        assert np.array_equal(out[inside > 0], target[inside > 0])
    # With keep_eyes off, the source's (open) eyes are squeezed in instead.
    plain = MeshSwapper(SwapOptions(keep_eyes=False))
    other = plain.swap(target, face, plain.prepare([(photos["obama"], faces["obama"])]))
    inside = blend.polygon_mask(target.shape, [lm[list(mesh.RIGHT_EYE), :2]])
    assert not np.array_equal(other[inside > 0], target[inside > 0])


def test_triangles_are_drawn_far_to_near_on_a_turned_head(faces, swapper) -> None:
    # Turn the frontal mesh by 50 degrees about its vertical axis: the nose now hides part of the far
    # cheek, so some pixels are covered by two triangles; the nearer one must win.
    lm = faces["obama"].landmarks.astype(np.float64)
    centre = lm.mean(axis=0)
    x, z = lm[:, 0] - centre[0], lm[:, 2] - centre[2]
    a = np.radians(50)
    turned = np.stack([x * np.cos(a) + z * np.sin(a) + 200, lm[:, 1] - centre[1] + 200,
                       -x * np.sin(a) + z * np.cos(a)], axis=1).astype(np.float32)
    ids, _, _ = swapper._maps((400, 400), turned[:, :2], turned[:, 2], turned[:, :2])
    tris = mesh.triangles()
    p = turned[:, :2].astype(np.float64)[tris]  # (T, 3, 2)
    depth = turned[:, 2][tris].mean(axis=1)
    ys, xs = np.nonzero(ids >= 0)
    pick = np.random.default_rng(0).choice(len(xs), 3000, replace=False)
    q = np.stack([xs[pick], ys[pick]], axis=1).astype(np.float64)
    # Barycentric containment of every sampled pixel in every triangle (with a small tolerance).
    v0, v1 = p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]
    det = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    ok = np.abs(det) > 1e-3
    d = q[:, None, :] - p[None, :, 0]
    u = (d[..., 0] * v1[:, 1] - d[..., 1] * v1[:, 0]) / np.where(ok, det, 1)
    v = (v0[:, 0] * d[..., 1] - v0[:, 1] * d[..., 0]) / np.where(ok, det, 1)
    cover = ok & (u > 0.02) & (v > 0.02) & (u + v < 0.98)
    overlapped = cover.sum(axis=1) >= 2
    assert overlapped.sum() > 100  # the turn really folds the mesh
    nearest = np.where(cover, depth[None, :], np.inf).min(axis=1)
    drawn = ids[ys[pick], xs[pick]]
    # What is drawn is at least as near as every triangle that covers the pixel (a nearer triangle
    # whose edge only grazes the pixel may also claim it: rasterisation includes edge pixels).
    assert np.mean(depth[drawn[overlapped]] <= nearest[overlapped] + 1e-6) > 0.99



def _turned(lm: np.ndarray, degrees: float) -> np.ndarray:
    """``lm`` turned about its vertical axis, centred on (200, 200)."""
    centre = lm.mean(axis=0)
    x, z = lm[:, 0] - centre[0], lm[:, 2] - centre[2]
    a = np.radians(degrees)
    return np.stack([x * np.cos(a) + z * np.sin(a) + 200, lm[:, 1] - centre[1] + 200,
                     -x * np.sin(a) + z * np.cos(a)], axis=1).astype(np.float32)


def test_the_warp_stays_near_each_pixels_own_source_triangle_on_edge_on_triangles(faces, swapper) -> None:
    # A head turned by 50 degrees sees the sides of its nose edge-on: slivers. Drawn with the full half
    # pixel around them, their pixels' barycentric weights reached -120 and the warp read the source far
    # off the face (black specks beside the nostril on the bundled clip). A sliver now reaches only half
    # its own height: no weight below -SLIVER_REACH, wherever the pixel is drawn.
    lm = faces["obama"].landmarks.astype(np.float64)
    turned = _turned(lm, 50)
    source = (lm[:, :2] - lm[:, :2].min(axis=0) + 10).astype(np.float32)
    ids, map_x, map_y = swapper._maps((400, 400), turned[:, :2], turned[:, 2], source)
    # The turn makes slivers: triangles whose height over their longest edge is under a fifth of a pixel
    # (the full half-pixel reach would put their pixels' weights below -2.5).
    every = turned[:, :2].astype(np.float64)[mesh.triangles()]
    edges = np.roll(every, -1, axis=1) - every
    e1, e2 = every[:, 1] - every[:, 0], every[:, 2] - every[:, 0]
    heights = np.abs(e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0])  # twice the area, then over the edge
    heights /= np.hypot(edges[..., 0], edges[..., 1]).max(axis=1)
    assert (heights < 0.2).sum() >= 5
    ys, xs = np.nonzero(ids >= 0)
    tris = mesh.triangles()[ids[ys, xs]]
    corners = source.astype(np.float64)[tris].reshape(-1, 2)  # each drawn pixel's source triangle
    at = np.stack([map_x[ys, xs], map_y[ys, xs]], axis=1).astype(np.float64)
    # Barycentric weights of the second and third corner: the affine map onto the unit triangle.
    unit = np.tile([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], (len(tris), 1))
    weights = mesh.triangle_affines(corners, unit, np.arange(len(corners)).reshape(-1, 3))
    w1 = weights[:, 0] * at[:, 0] + weights[:, 1] * at[:, 1] + weights[:, 2]
    w2 = weights[:, 3] * at[:, 0] + weights[:, 4] * at[:, 1] + weights[:, 5]
    assert min(w1.min(), w2.min(), (1 - w1 - w2).min()) > -SLIVER_REACH - 1e-3

def test_face_partly_outside_the_image(photos, faces, swapper) -> None:
    target = photos["obama"]
    shift = np.array([-faces["obama"].bbox[0] - 0.4 * faces["obama"].width, 0, 0], np.float32)
    face = faces["obama"].with_(landmarks=faces["obama"].landmarks + shift)
    source = swapper.prepare([(photos["biden"], faces["biden"])])
    out = swapper.swap(target, face, source)
    assert out.shape == target.shape
    away = _outside(face, target.shape)
    assert np.array_equal(out[away], target[away])
    assert not np.array_equal(out, target)  # the visible part was swapped


def _moved_frame(image: np.ndarray, face: Face, degrees: float, shift: float,
                 zoom: float = 1.0) -> np.ndarray:
    """The next frame of a moving head: ``image`` rolled about the face's nose, zoomed and shifted."""
    matrix = cv2.getRotationMatrix2D(tuple(float(v) for v in face.landmarks[4, :2]), degrees, zoom)
    matrix[0, 2] += shift
    return cv2.warpAffine(image, matrix, image.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def _inner(face: Face) -> tuple[slice, slice]:
    x0, y0, x1, y1 = face.bbox.astype(int)
    return slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4)


def test_a_tracked_face_carries_its_analysis_to_the_next_frame(photos, faces, swapper) -> None:
    # Two frames of a moving head in one batch: the second takes the first's work-scale analysis along
    # the mesh's motion. It paints what a fresh analysis paints, within the frame-to-frame change of
    # the analysis itself, and still only around the face.
    source = swapper.prepare([(photos["biden"], faces["biden"])])
    first, face = photos["obama2"], faces["obama2"].with_(track_id=7)
    second = _moved_frame(first, face, 2.0, 6.0)
    (moved,) = MeshAnalyser().detect(second)
    moved = moved.with_(track_id=7)
    batch = swapper.swap_batch([first, second], [[face], [moved]], source)
    np.testing.assert_array_equal(batch[0], swapper.swap(first, face, source))  # analysed afresh
    fresh = swapper.swap(second, moved, source)
    change = np.abs(batch[1].astype(int) - fresh)[_inner(moved)].max(axis=2)
    assert change.mean() < 1.0 and np.percentile(change, 99) < 12, (change.mean(), np.percentile(change, 99))
    assert np.array_equal(batch[1][_outside(moved, second.shape)], second[_outside(moved, second.shape)])
    swapped = np.abs(batch[1].astype(int) - second)[_inner(moved)].max(axis=2)
    assert swapped.mean() > 10 * change.mean()  # (the face did change: the swap is there)


@pytest.mark.parametrize("case", ["jumped", "untracked"])
def test_a_face_that_changed_or_has_no_track_is_analysed_afresh(photos, faces, swapper, case) -> None:
    # A track that lands on a face 30 % larger (a cut, another person) or faces without a track id
    # (still images) get their own analysis: the same pixels as a swap of that frame alone.
    source = swapper.prepare([(photos["biden"], faces["biden"])])
    first, face = photos["obama2"], faces["obama2"]
    second = _moved_frame(first, face, 0.0, 0.0, zoom=1.3)
    (moved,) = MeshAnalyser().detect(second)
    if case == "jumped":
        face, moved = face.with_(track_id=3), moved.with_(track_id=3)
    else:
        second, moved = _moved_frame(first, face, 2.0, 6.0), None
        (moved,) = MeshAnalyser().detect(second)
    batch = swapper.swap_batch([first, second], [[face], [moved]], source)
    np.testing.assert_array_equal(batch[1], swapper.swap(second, moved, source))


def test_the_surroundings_warp_is_carried_with_a_moving_head_and_remade_for_a_new_shape(
        photos, faces, swapper) -> None:
    # The warp that makes jaw, neck and hair follow the shaped outline, made on one frame, carried to
    # the next frame of a head that rolled, came closer and moved: the pixels of a warp made afresh
    # there, but for sub-pixel shifts along sharp edges. A jaw that moved on its own is warped afresh.
    source = swapper.prepare([(photos["biden"], faces["biden"])])
    first, face = photos["obama2"], faces["obama2"]
    second = _moved_frame(first, face, 3.0, 8.0, zoom=1.04)
    (moved,) = MeshAnalyser().detect(second)
    lm1, lm2 = (np.asarray(f.landmarks, np.float32) for f in (face, moved))
    made = swapper._follow_shape(first.copy(), lm1, swapper._shaped(lm1, source))
    assert made is not None
    carried, fresh = second.copy(), second.copy()
    shaped2 = swapper._shaped(lm2, source)
    assert swapper._follow_shape(carried, lm2, shaped2, made) is made  # carried: the warp it was made as
    assert swapper._follow_shape(fresh, lm2, shaped2) is not made
    warped = np.abs(fresh.astype(int) - second).max(axis=2) > 0
    assert warped.sum() > 10_000  # (the outline did move the surroundings)
    change = np.abs(carried.astype(int) - fresh).max(axis=2)[warped]
    assert change.mean() < 2.0 and np.percentile(change, 99) < 16, (change.mean(), np.percentile(change, 99))
    away = _outside(moved, second.shape)
    assert np.array_equal(carried[away], second[away])  # and nothing beyond the band moved
    jaw = lm2.copy()
    jaw[list(mesh.FACE_OVAL), 1] += 3.0 * (lm2[list(mesh.FACE_OVAL), 1] > lm2[:, 1].mean())  # the chin drops
    anew = second.copy()
    assert swapper._follow_shape(anew, jaw, swapper._shaped(jaw, source), made) is not made


def test_the_surroundings_warp_of_a_face_at_the_image_border_is_not_carried(photos, faces, swapper) -> None:
    # Cut by the border, the warp's rectangle misses part of the band that comes into view as the face
    # moves in: the warp is applied but not kept for the next frame.
    source = swapper.prepare([(photos["biden"], faces["biden"])])
    face = faces["obama2"]
    dx = -float(face.bbox[0]) - 30.0  # the face's left edge 30 px outside the image
    photo = photos["obama2"]
    image = cv2.warpAffine(photo, np.float32([[1, 0, dx], [0, 1, 0]]), photo.shape[1::-1],
                           borderMode=cv2.BORDER_REFLECT)
    lm = np.asarray(face.landmarks, np.float32) + np.float32([dx, 0.0, 0.0])
    out = image.copy()
    assert swapper._follow_shape(out, lm, swapper._shaped(lm, source)) is None
    assert not np.array_equal(out, image)
