import numpy as np
import pytest

from masquerade.types import Face


def test_face_normalises_arrays_and_derives_geometry():
    face = Face(bbox=[10, 20, 50, 100], kps5=np.zeros((5, 2)))
    assert face.bbox.dtype == np.float32 and face.kps5.shape == (5, 2)
    assert face.width == 40 and face.height == 80
    np.testing.assert_allclose(face.center, [30, 60])
    moved = face.with_(track_id=3)
    assert moved.track_id == 3 and face.track_id is None


def test_face_rejects_bad_landmarks():
    with pytest.raises(ValueError):
        Face(bbox=[0, 0, 1, 1], kps5=np.zeros((5, 2)), landmarks=np.zeros((468,)))
