"""SCRFD decoding: a stand-in that encodes known faces on purpose, recovered through the detector."""

from __future__ import annotations

import numpy as np
import pytest
from neural_support import session

from masquerade._stages.detect_scrfd import ScrfdDetector, anchor_centres, decode, letterbox
from masquerade.errors import ModelError
from masquerade.models.manifest import get_spec
from masquerade.models.standins import scrfd, scrfd_encode


def _faces_in_frame():
    """Two faces (boxes and key points in frame pixels), plus one below threshold."""
    boxes = np.array([[600, 150, 780, 390], [120, 200, 330, 470], [400, 600, 460, 680]], np.float32)
    kps = []
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        rel = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.6], [0.35, 0.8], [0.65, 0.8]])
        kps.append(rel * [w, h] + [x1, y1])
    return boxes, np.asarray(kps, np.float32), [0.9, 0.8, 0.3]


def test_letterbox_is_top_left_and_keeps_the_aspect(obama):
    canvas, scale = letterbox(obama, 640)  # 910 x 1137 -> 512 x 640
    assert canvas.shape == (640, 640, 3)
    assert (canvas[:, 513:] == 0).all() and canvas[:, :512].any()
    np.testing.assert_allclose(scale, [512 / 910, 640 / 1137])


def test_anchor_layout_matches_scrfd():
    c = anchor_centres(640, 32)
    assert c.shape == (20 * 20 * 2, 2)
    np.testing.assert_array_equal(c[:4], [[0, 0], [0, 0], [32, 0], [32, 0]])
    np.testing.assert_array_equal(c[40], [0, 32])


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_detector_recovers_the_encoded_faces(tmp_path, obama, stride):
    image = np.ascontiguousarray(obama[:, :800])  # 800 x 1137: scale 640 / 1137
    boxes, kps, scores = _faces_in_frame()
    sx, sy = round(800 * 640 / 1137) / 800, 640 / 1137
    outputs = scrfd_encode(boxes * [sx, sy, sx, sy], kps * [sx, sy], scores, stride=stride)
    # A weaker duplicate of the first face on a neighbouring anchor: NMS must drop it.
    dup = scrfd_encode(boxes[:1] * [sx, sy, sx, sy] + 4, kps[:1] * [sx, sy], [0.7], stride=stride)
    for i in range(9):
        extra = np.flatnonzero(dup[i].any(axis=1))
        if len(extra):
            j = extra[0] + 2 * (640 // stride)  # one row lower, same cell column
            outputs[i][j] = dup[i][extra[0]]
    assert len(decode(outputs, 640, 0.5)[2]) == 3  # two faces and the duplicate pass the threshold
    det = ScrfdDetector(session(tmp_path, "det", scrfd(outputs)), get_spec("det_10g"))
    faces = det.detect(image)
    assert len(faces) == 2
    # Sorted left to right: the face at x=120 first.
    for got, want_box, want_kps, score in zip(faces, boxes[[1, 0]], kps[[1, 0]], [0.8, 0.9], strict=True):
        np.testing.assert_allclose(got.bbox, want_box, atol=0.05)
        np.testing.assert_allclose(got.kps5, want_kps, atol=0.05)
        assert got.score == pytest.approx(score)


def test_batched_outputs_and_preprocessing(tmp_path):
    boxes, kps, scores = _faces_in_frame()
    outputs = [o[None] for o in scrfd_encode(boxes[:1], kps[:1], scores[:1])]
    found, _, found_scores = decode(outputs, 640, 0.5)
    np.testing.assert_allclose(found_scores, [0.9])
    np.testing.assert_allclose(found, boxes[:1], atol=1e-3)
    with pytest.raises(ModelError):
        decode(outputs[:6], 640, 0.5)
    graph = scrfd(scrfd_encode(boxes[:1], kps[:1], [0.9]))
    det = ScrfdDetector(session(tmp_path, "det", graph), get_spec("det_10g"))
    image = np.zeros((320, 480, 3), np.uint8)
    image[..., 2] = 255  # pure red in BGR
    blob, scale = det.preprocess(image)
    np.testing.assert_allclose(scale, [640 / 480, 427 / 320])
    assert blob.shape == (1, 3, 640, 640)
    # RGB order, (x - 127.5) / 128, black letterbox padding below the image.
    assert blob[0, 0, 0, 0] == pytest.approx(127.5 / 128) and blob[0, 2, 0, 0] == pytest.approx(-127.5 / 128)
    assert blob[0, 0, 500, 0] == pytest.approx(-127.5 / 128)
    assert det.detect(image)[0].score == pytest.approx(0.9)
