"""dlib recognizer on the bundled photos: the same person matches, different people do not."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.recognize import DlibRecognizer, load_recognizer, models_dir
from masquerade.errors import ModelError, UsageError
from masquerade.types import Face

NAMES = ("obama", "obama2", "biden", "astronaut")


@pytest.fixture(scope="module")
def recognizer() -> DlibRecognizer:
    return DlibRecognizer()


@pytest.fixture(scope="module")
def faces(photos) -> dict[str, Face]:
    analyser = MeshAnalyser()
    return {n: max(analyser.detect(img), key=lambda f: f.size) for n, img in photos.items()}


@pytest.fixture(scope="module")
def embeddings(recognizer, photos, faces) -> dict[str, np.ndarray]:
    return {n: recognizer.embed(photos[n], faces[n]) for n in NAMES}


def test_embedding_is_a_unit_float32_vector(embeddings) -> None:
    for e in embeddings.values():
        assert e.shape == (128,) and e.dtype == np.float32
        assert float(np.linalg.norm(e)) == pytest.approx(1.0, abs=1e-5)


def test_same_person_matches_and_others_do_not(recognizer, embeddings) -> None:
    t = recognizer.default_threshold
    for a, b in itertools.combinations(NAMES, 2):
        d = recognizer.distance(embeddings[a], embeddings[b])
        if {a, b} == {"obama", "obama2"}:
            assert d < t - 0.1, (a, b, d)
        else:
            assert d > t + 0.1, (a, b, d)


def test_shape_predictor_alignment_for_faces_without_a_mesh(recognizer, photos, faces, embeddings) -> None:
    # Faces from detectors with 5 key points only are aligned by dlib's own 5-point predictor.
    e = recognizer.embed(photos["obama2"], faces["obama2"].with_(landmarks=None))
    assert recognizer.distance(e, embeddings["obama"]) < recognizer.default_threshold
    assert recognizer.distance(e, embeddings["obama2"]) < 0.1
    assert recognizer.distance(e, embeddings["biden"]) > recognizer.default_threshold


def test_a_face_cut_by_the_image_border_still_matches(recognizer, photos, embeddings) -> None:
    image = np.ascontiguousarray(photos["obama"][:, 480:])  # cuts the face about in half
    face = max(MeshAnalyser().detect(image), key=lambda f: f.size)
    assert face.bbox[0] < 0
    d = recognizer.distance(recognizer.embed(image, face), embeddings["obama"])
    assert d < recognizer.default_threshold


def test_embed_faces_sets_embeddings_and_keeps_the_rest(recognizer, photos, faces, embeddings) -> None:
    face = faces["biden"].with_(track_id=7)
    (out,) = recognizer.embed_faces(photos["biden"], [face])
    assert out.track_id == 7 and out.landmarks is face.landmarks
    np.testing.assert_allclose(out.embedding, embeddings["biden"], atol=1e-5)
    assert recognizer.embed_faces(photos["biden"], []) == []


def test_distance_is_a_metric_on_normalised_vectors(recognizer) -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=128), rng.normal(size=128)
    assert recognizer.distance(a, a * 3.0) == pytest.approx(0.0, abs=1e-6)
    assert recognizer.distance(a, b) == pytest.approx(recognizer.distance(b, a))
    assert recognizer.distance(a, -a) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        recognizer.distance(a, b[:64])


def test_model_files_are_found_without_importing_the_package() -> None:
    folder = models_dir()
    assert (folder / "dlib_face_recognition_resnet_model_v1.dat").is_file()
    assert (folder / "shape_predictor_5_face_landmarks.dat").is_file()


def test_missing_model_files_raise_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing"):
        DlibRecognizer(model_dir=tmp_path)


def test_recognizers_are_loaded_by_name() -> None:
    assert load_recognizer("dlib").name == "dlib"
    with pytest.raises(UsageError, match="unknown recognizer"):
        load_recognizer("arcface")
