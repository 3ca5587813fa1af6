"""ArcFace recognizer plumbing with a content-sensitive stand-in: alignment, normalisation, batching."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from neural_support import KPS, face, session

from masquerade._stages.recognize_arcface import ArcFaceRecognizer
from masquerade.geometry.align import transform_points
from masquerade.models.manifest import get_spec
from masquerade.models.standins import arcface


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> ArcFaceRecognizer:
    arc = session(tmp_path_factory.mktemp("arc"), "w600k", arcface())
    return ArcFaceRecognizer(arc, get_spec("w600k_r50"))


def test_embeddings_are_unit_vectors_and_distance_is_one_minus_cosine(recognizer, obama, biden):
    a, b = recognizer.embed(obama, face("obama")), recognizer.embed(biden, face("biden"))
    assert a.shape == (512,) and a.dtype == np.float32
    assert np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)
    assert recognizer.distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert recognizer.distance(a, b) == pytest.approx(1 - float(a @ b), abs=1e-6)
    assert recognizer.distance(a, -a) == pytest.approx(2.0, abs=1e-6)
    assert recognizer.name == "arcface" and 0 < recognizer.default_threshold < 1


def test_alignment_makes_the_embedding_independent_of_where_the_face_sits(recognizer, obama, biden):
    # The same photo rotated by 25 degrees, shrunk to 60 % and moved: the aligned crop is the same face.
    m = cv2.getRotationMatrix2D((455, 568), 25, 0.6)
    m[:, 2] += (-80, 40)
    moved = cv2.warpAffine(obama, m, (910, 1137), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    kps = transform_points(np.asarray(KPS["obama"]), m)
    still = recognizer.embed(obama, face("obama"))
    turned = recognizer.embed(moved, face("obama").with_(kps5=kps))
    other = recognizer.embed(biden, face("biden"))
    assert recognizer.distance(still, turned) < 0.1 * recognizer.distance(still, other)


def test_crop_is_rgb_normalised_as_arcface_expects(recognizer):
    image = np.zeros((400, 400, 3), np.uint8)
    image[..., 0] = 255  # pure blue in BGR
    blob = recognizer.preprocess(recognizer.crops(image, [face("obama", 0.5, (-20, -20))]))
    assert blob.shape == (1, 3, 112, 112) and blob.dtype == np.float32
    raw = recognizer.infer(blob)[0]
    # The stand-in's first three outputs are the R, G, B means of the blob: (x - 127.5) / 127.5.
    np.testing.assert_allclose(raw[:3], [-1.0, -1.0, 1.0], atol=1e-5)


def test_embed_faces_is_one_batch_equal_to_one_by_one(recognizer, obama):
    faces = [face("obama"), face("obama", 0.5, (30, 600))]
    out = recognizer.embed_faces(obama, faces)
    assert [f.kps5.tolist() for f in out] == [f.kps5.tolist() for f in faces]
    for f, o in zip(faces, out, strict=True):
        np.testing.assert_allclose(o.embedding, recognizer.embed(obama, f), atol=1e-6)
    assert recognizer.embed_faces(obama, []) == []
