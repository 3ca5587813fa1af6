"""Box maths (IoU, NMS, weighted NMS grouping) and the anti-aliased affine warp."""

from __future__ import annotations

import cv2
import numpy as np

from masquerade.geometry.boxes import iou, iou_matrix, nms, weighted_nms
from masquerade.geometry.warp import warp_affine


def test_iou_values() -> None:
    box = np.array([0, 0, 10, 10])
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]])
    assert np.allclose(iou(box, others), [1.0, 50 / 150, 0.0, 0.0])
    assert iou_matrix(others, np.zeros((0, 4))).shape == (4, 0)
    assert np.allclose(iou_matrix(others[:2], others[:2]), [[1, 1 / 3], [1 / 3, 1]])


def test_nms_keeps_best_of_each_cluster() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [51, 50, 61, 60]])
    scores = np.array([0.6, 0.9, 0.5, 0.7])
    assert nms(boxes, scores, 0.3) == [1, 3]
    assert nms(boxes, scores, 0.99) == [1, 3, 0, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.3) == []


def test_weighted_nms_groups() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    groups = weighted_nms(boxes, np.array([0.6, 0.9, 0.5]), 0.3)
    assert [g[0] for g in groups] == [1, 2]
    assert sorted(groups[0][1].tolist()) == [0, 1] and groups[1][1].tolist() == [2]


def test_warp_affine_shrinks_without_aliasing() -> None:
    # One-pixel stripes shrunk 8x: bilinear sampling picks whole stripes (aliasing); the area
    # pre-shrink gives the true mean grey.
    stripes = np.zeros((800, 800, 3), np.uint8)
    stripes[:, ::2] = 255
    m = np.array([[1 / 8, 0, 0], [0, 1 / 8, 0]])
    out = warp_affine(stripes, m, (100, 100))
    assert abs(out[10:90, 10:90].mean() - 127.5) < 3 and out[10:90, 10:90].std() < 3
    naive = cv2.warpAffine(stripes, m, (100, 100))
    assert abs(naive[10:90, 10:90].mean() - 127.5) > 100  # every sample hits a white stripe
    # Same geometry as cv2.warpAffine: a bright dot lands in the same place.
    dot = np.zeros((800, 800, 3), np.uint8)
    cv2.circle(dot, (400, 240), 24, (255, 255, 255), -1)
    rot = cv2.getRotationMatrix2D((400, 400), 30, 0.2)
    rot[:, 2] -= 300  # the image centre lands in the middle of the 200-px output
    a, b = warp_affine(dot, rot, (200, 200)), cv2.warpAffine(dot, rot, (200, 200))
    ca = np.argwhere(a[..., 0] > 100).mean(axis=0)
    cb = np.argwhere(b[..., 0] > 100).mean(axis=0)
    assert np.allclose(ca, cb, atol=0.6)


def test_warp_affine_outside_the_image_is_black() -> None:
    image = np.full((50, 50, 3), 200, np.uint8)
    m = np.array([[0.1, 0, 500], [0, 0.1, 500]])  # maps the image far off the output
    assert not warp_affine(image, m, (20, 20)).any()


def test_warp_affine_replicate_border_matches_opencv() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)
    smooth = cv2.GaussianBlur(noise, (0, 0), 8)  # nothing to alias: both warps must agree
    m = np.array([[0.3, 0.1, -20], [-0.1, 0.3, 10]])  # shrinks 3x and reaches past the left edge
    ours = warp_affine(smooth, m, (64, 64), replicate=True).astype(int)
    theirs = cv2.warpAffine(smooth, m, (64, 64), borderMode=cv2.BORDER_REPLICATE).astype(int)
    assert np.abs(ours - theirs).mean() < 2
    far = np.array([[0.1, 0, -500], [0, 0.1, -500]])  # samples image (5000.., 5000..): off the bottom right
    out = warp_affine(noise, far, (8, 8), replicate=True)
    assert (out == noise[-1, -1]).all()


def test_warp_affine_shrinking_keeps_the_exact_geometry() -> None:
    """A strong shrink (whole-factor area step, then bilinear) maps every output pixel to the same
    image point as cv2.warpAffine would: a coordinate ramp comes out as the inverse map itself."""
    h, w = 900, 700
    m = np.array([[0.13, 0.02, -20.0], [-0.02, 0.13, -10.0]])  # shrinks 7.5x, turns a little
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    inv = cv2.invertAffineTransform(m)
    grid = np.stack(np.meshgrid(np.arange(64.0), np.arange(64.0)), axis=-1)
    expected = grid @ inv[:, :2].T + inv[:, 2]
    inside = np.all((expected > 8) & (expected < np.array([w, h]) - 8), axis=-1)
    for channel, ramp in enumerate((xs, ys)):
        out = warp_affine(ramp, m, (64, 64))
        assert np.abs(out - expected[..., channel])[inside].max() < 0.01


def test_warp_affine_shrinks_an_image_thinner_than_one_shrink_step() -> None:
    strip = np.full((3, 50, 3), 100, np.uint8)  # 3 px tall, shrunk 10x
    out = warp_affine(strip, np.array([[0.1, 0, 0], [0, 0.1, 0]]), (8, 8), replicate=True)
    assert out.shape == (8, 8, 3) and (out == 100).all()
