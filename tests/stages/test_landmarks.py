"""Face mesh on rotated ROIs, kps5 from the mesh, and MeshAnalyser.refine (tracking step)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.landmarks import Roi, kps5_from_mesh, roi_from_landmarks


@pytest.fixture(scope="module")
def analyser() -> MeshAnalyser:
    return MeshAnalyser()


def shift(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    out = np.zeros_like(image)
    h, w = image.shape[:2]
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[
        max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)
    ]
    return out


def test_roi_affines_are_inverse() -> None:
    roi = Roi(100.0, 50.0, 80.0, 0.3)
    m, inv = roi.crop_to_image(), roi.image_to_crop()
    p = np.array([10.0, 150.0])
    q = m[:, :2] @ p + m[:, 2]
    assert np.allclose(inv[:, :2] @ q + inv[:, 2], p)
    # The crop centre maps to the ROI centre; the crop's x axis turns clockwise by the rotation.
    assert np.allclose(m[:, :2] @ [96, 96] + m[:, 2], [100, 50])
    assert np.allclose(m[:, 0] / np.linalg.norm(m[:, 0]), [math.cos(0.3), math.sin(0.3)])


def test_kps5_from_mesh_shapes() -> None:
    lm = np.random.default_rng(0).random((468, 3)).astype(np.float32)
    assert kps5_from_mesh(lm).shape == (5, 2)
    assert kps5_from_mesh(lm[:, :2]).shape == (5, 2)
    with pytest.raises(ValueError):
        kps5_from_mesh(lm[:10])


def test_refine_follows_a_shifted_face(analyser: MeshAnalyser, obama: np.ndarray) -> None:
    (face,) = analyser.detect(obama)
    moved = shift(obama, 10, -10)
    (new,) = analyser.refine(moved, [face.with_(track_id=7)])
    assert new.track_id == 7
    assert new.score >= 0.9
    d = new.kps5 - face.kps5
    assert np.allclose(d.mean(axis=0), [10, -10], atol=3)


def test_refine_drops_a_face_that_is_gone(analyser: MeshAnalyser, obama: np.ndarray) -> None:
    (face,) = analyser.detect(obama)
    wall = np.full_like(obama, 170)
    assert analyser.refine(wall, [face]) == []


def test_roi_from_landmarks_levels_the_eyes(analyser: MeshAnalyser, astronaut: np.ndarray) -> None:
    (face,) = analyser.detect(astronaut)
    roi = roi_from_landmarks(face.landmarks)
    # The astronaut's head is nearly upright: small rotation, ROI 1.5x the face and centred on it.
    assert abs(roi.rotation) < 0.2
    assert 1.3 * face.size < roi.size < 1.8 * face.size
    assert np.allclose([roi.cx, roi.cy], face.center, atol=0.1 * face.size)


def test_refine_starts_from_a_face_without_mesh(analyser: MeshAnalyser, astronaut: np.ndarray) -> None:
    """Faces from a neural detector carry only a box and kps5: refine() still fits the mesh."""
    from masquerade.types import Face

    (face,) = analyser.detect(astronaut)
    bare = Face(bbox=face.bbox, kps5=face.kps5, score=0.8, track_id=3)
    (new,) = analyser.refine(astronaut, [bare])
    assert new.track_id == 3 and new.landmarks is not None
    assert np.allclose(new.kps5, face.kps5, atol=3)


def test_refine_keeps_order_and_drops_only_lost_faces(analyser: MeshAnalyser, group_photo) -> None:
    image, _ = group_photo
    faces = [f.with_(track_id=i) for i, f in enumerate(analyser.detect(image))]
    # Paint the third face out: it must vanish, the others keep their order and ids.
    x1, y1, x2, y2 = faces[2].bbox.astype(int)
    erased = image.copy()
    erased[y1 - 20:y2 + 20, x1 - 20:x2 + 20] = 150
    out = analyser.refine(erased, faces)
    assert [f.track_id for f in out] == [f.track_id for f in faces if f.track_id != 2]
    for old, new in zip([f for f in faces if f.track_id != 2], out, strict=True):
        assert np.abs(new.kps5 - old.kps5).max() < 0.1 * old.width + 2


def test_refine_keeps_up_with_a_fast_moving_face(analyser: MeshAnalyser, obama: np.ndarray) -> None:
    """A face moving a quarter of its width per frame: without the re-fit the mesh lags a little more
    each frame (it pulls toward the ROI centre) and loses the face after ~8 frames."""
    import cv2

    small = cv2.resize(obama, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    h, w = small.shape[:2]
    step = 30  # px per frame; the face is ~120 px wide
    faces = None
    for t in range(10):
        frame = np.full((h, w + 10 * step, 3), 120, np.uint8)
        frame[:, t * step:t * step + w] = small
        if faces is None:
            faces = analyser.detect(frame)
            x0 = float(faces[0].kps5[:, 0].mean())
        else:
            faces = analyser.refine(frame, faces)
        assert len(faces) == 1
        assert abs(faces[0].kps5[:, 0].mean() - (x0 + t * step)) < 0.03 * faces[0].width


def test_refine_does_not_settle_on_dark_clothing(
    analyser: MeshAnalyser, biden: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Biden's suit buttons turned sideways score ~0.7 presence: a track there must be dropped."""
    import masquerade._stages.detect as detect

    suit = np.ascontiguousarray(np.rot90(biden[900:1650, 200:1000]))
    with monkeypatch.context() as m:
        m.setattr(detect, "MIN_EVIDENCE", 0.0)  # let the mesh's false face through, as a drifting track
        (ghost,) = analyser.detect(suit)
    assert 0.5 < ghost.score < 0.95
    assert analyser.refine(suit, [ghost.with_(track_id=1)]) == []
