"""Calibration inputs for int8: the bundled faces, their variants, and the stages' own preprocessing."""

from __future__ import annotations

import numpy as np
from neural_support import session

from masquerade._stages.calibration import (
    VARIANTS,
    _variants,
    bundled_faces,
    enhancer_calibration,
    swapper_calibration,
)
from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.enhance import FaceEnhancer
from masquerade._stages.recognize_arcface import ArcFaceRecognizer
from masquerade._stages.swap_neural import NeuralSwapper
from masquerade.config import SwapOptions
from masquerade.models import standins
from masquerade.models.manifest import get_spec


def test_bundled_faces_are_found_where_their_key_points_say():
    faces = bundled_faces()
    assert len(faces) == 4
    analyser = MeshAnalyser()
    for image, face in faces:
        assert image.shape == (384, 384, 3)
        found = analyser.detect(image)
        assert len(found) >= 1
        assert np.abs(found[0].kps5 - face.kps5).max() < 6  # px


def test_every_variant_keeps_the_key_points_on_the_face():
    faces = bundled_faces()
    analyser = MeshAnalyser()
    for row in _variants(faces):
        image, face = row[0]
        found = analyser.detect(image)
        assert len(found) >= 1 and np.abs(found[0].kps5 - face.kps5).max() < 8
        assert face.kps5[0, 0] < face.kps5[1, 0]  # the left eye stays the left one, mirrored or not


def test_swapper_calibration_pairs_each_target_with_another_person(tmp_path):
    recognizer = ArcFaceRecognizer(session(tmp_path, "arc", standins.arcface()), get_spec("w600k_r50"))
    swapper = NeuralSwapper(session(tmp_path, "sw", standins.swapper(mode="conv")), get_spec("inswapper_128"),
                            SwapOptions(swapper="inswapper_128"), recognizer)
    data = swapper_calibration(swapper)
    assert len(data.calibration) == 16 and len(data.holdout) == 8 and data.output == "output"
    own = [swapper.prepare([pair]).latent for pair in bundled_faces()]
    for k, feeds in enumerate([*data.calibration, *data.holdout]):
        assert feeds["target"].shape == (1, 3, 128, 128) and feeds["source"].shape == (1, 512)
        assert not np.allclose(feeds["source"], own[k % 4])
    picture = data.to_pixels(np.zeros((1, 3, 128, 128), np.float32))
    assert picture.shape == (1, 128, 128, 3)


def test_enhancer_calibration_uses_the_enhancers_inputs(tmp_path):
    model = standins.image_model(codeformer=True)
    enhancer = FaceEnhancer(session(tmp_path, "cf", model), get_spec("codeformer"), 0.8, fidelity=0.3)
    data = enhancer_calibration(enhancer)
    assert len(data.calibration) == 4 * 4 and len(data.holdout) == 4 * (len(VARIANTS) - 4)
    feeds = data.holdout[0]
    assert feeds["input"].shape == (1, 3, 512, 512) and feeds["weight"].tolist() == [0.3]
