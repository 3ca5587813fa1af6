"""Face enhancers through stand-ins: blend weight, paste region, CodeFormer's float64 fidelity input."""

from __future__ import annotations

import numpy as np
import pytest
from neural_support import face, session

from masquerade._stages.enhance import FaceEnhancer
from masquerade.errors import ModelError, UsageError
from masquerade.models.manifest import get_spec
from masquerade.models.standins import image_model


def _enhancer(tmp_path, name="gfpgan_1.4", mode="identity", blend=1.0, **kw):
    graph = image_model(512, mode, colour=(-1.0, 1.0, -1.0), codeformer=name == "codeformer")
    return FaceEnhancer(session(tmp_path, name, graph), get_spec(name), blend, **kw)


def test_identity_enhancer_keeps_the_frame(tmp_path, obama):
    target = face("obama")
    out = _enhancer(tmp_path).enhance(obama, target)
    diff = np.abs(out.astype(np.int16) - obama)
    # The 512 crop is about this face's own scale (1.12 crop px per frame px): resampling only.
    x1, y1, x2, y2 = target.bbox.astype(int)
    assert diff[y1:y2, x1:x2].mean() < 1.0 and diff.max() < 25
    far = np.ones(obama.shape[:2], bool)
    far[max(y1 - 200, 0) : y2 + 200, max(x1 - 200, 0) : x2 + 200] = False
    assert diff[far].max() == 0


@pytest.mark.parametrize("name", ["gfpgan_1.4", "codeformer"])
def test_blend_weighs_the_enhanced_face_against_the_frame(tmp_path, obama, name):
    target = face("obama")
    c = target.kps5.mean(axis=0).astype(int)
    half = _enhancer(tmp_path, name, "flat", blend=0.5, fidelity=0.3).enhance(obama, target)
    want = np.rint(0.5 * obama[c[1], c[0]].astype(np.float64) + 0.5 * np.array([0, 255, 0]))
    np.testing.assert_allclose(half[c[1], c[0]], want, atol=1)
    none = _enhancer(tmp_path, name, "flat", blend=0.0).enhance(obama, target)
    np.testing.assert_array_equal(none, obama)


def test_enhancer_rejects_bad_settings(tmp_path):
    with pytest.raises(UsageError):
        _enhancer(tmp_path, blend=1.5)
    with pytest.raises(UsageError):
        _enhancer(tmp_path, "codeformer", fidelity=-0.1)
    graph = image_model(512)
    with pytest.raises(ModelError):
        FaceEnhancer(session(tmp_path, "x", graph), get_spec("inswapper_128"), 0.5)
