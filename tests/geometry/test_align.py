"""Alignment maths: templates, similarity estimates, crops and their round trip on a real face."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from masquerade.geometry import align
from masquerade.models.manifest import ARCFACE_112, ARCFACE_128, FFHQ_512, get_spec

OBAMA_KPS = np.array(
    [[442.77, 215.61], [548.54, 214.40], [496.69, 277.40], [432.88, 319.42], [558.78, 318.12]]
)


def _similarity(angle_deg: float, scale: float, tx: float, ty: float) -> np.ndarray:
    a = np.radians(angle_deg)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), tx], [scale * np.sin(a), scale * np.cos(a), ty]])


def test_templates_relate_as_insightface_scales_them():
    # inswapper's 128 crop is the 112 ArcFace framing shifted +8 px in x; hyperswap is that at 2x.
    np.testing.assert_allclose(np.asarray(ARCFACE_128), np.asarray(ARCFACE_112) + np.array((8, 0)), atol=1e-4)
    np.testing.assert_allclose(np.asarray(get_spec("hyperswap_1a_256").template),
                               align.scale_template(ARCFACE_128, 128, 256), atol=1e-3)
    np.testing.assert_allclose(align.scale_template(FFHQ_512, 512, 256), np.asarray(FFHQ_512) / 2)


@pytest.mark.parametrize("angle,scale,tx,ty", [(0, 1, 0, 0), (17, 0.37, -120.5, 33.25), (-95, 2.5, 10, -300)])
def test_estimate_similarity_recovers_a_known_transform_exactly(angle, scale, tx, ty):
    m = _similarity(angle, scale, tx, ty)
    dst = OBAMA_KPS @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(align.estimate_similarity(OBAMA_KPS, dst), m, atol=1e-9)
    assert align.affine_scale(m) == pytest.approx(scale)


def test_estimate_similarity_is_least_squares_and_never_reflects():
    rng = np.random.default_rng(3)
    dst = np.asarray(ARCFACE_112) + rng.normal(0, 2, (5, 2))
    m = align.estimate_similarity(OBAMA_KPS, dst)
    resid = ((OBAMA_KPS @ m[:, :2].T + m[:, 2] - dst) ** 2).sum()
    # Any small change of the four similarity parameters fits worse.
    a, b = m[0, 0], m[1, 0]
    for da, db, dx, dy in rng.normal(0, 1e-3, (50, 4)):
        p = np.array([[a + da, -(b + db), m[0, 2] + dx], [b + db, a + da, m[1, 2] + dy]])
        assert ((OBAMA_KPS @ p[:, :2].T + p[:, 2] - dst) ** 2).sum() >= resid - 1e-9
    # A mirrored face still gets a rotation (det > 0), not a reflection.
    mirrored = OBAMA_KPS * [-1, 1]
    assert np.linalg.det(align.estimate_similarity(mirrored, ARCFACE_112)[:, :2]) > 0
    with pytest.raises(ValueError):
        align.estimate_similarity(np.ones((5, 2)), ARCFACE_112)


def test_invert_and_transform_points_round_trip():
    m = _similarity(23, 0.8, 40, -7)
    pts = align.transform_points(align.transform_points(OBAMA_KPS, m), align.invert(m))
    np.testing.assert_allclose(pts, OBAMA_KPS, atol=1e-3)


def test_crop_lands_key_points_on_the_template(obama):
    m = align.crop_affine(OBAMA_KPS, ARCFACE_128, 128, 512)
    target = align.scale_template(ARCFACE_128, 128, 512)
    landed = align.transform_points(OBAMA_KPS, m)
    # The eyes land within 1% of the crop side; a smile widens the mouth, the fit shares that out.
    assert np.abs(landed[:2] - target[:2]).max() < 0.025 * 512
    # Least squares over all five points: no worse than OpenCV's robust partial-affine estimate.
    cv_m, _ = cv2.estimateAffinePartial2D(OBAMA_KPS, target, method=cv2.LMEDS)
    ours = ((landed - target) ** 2).sum()
    theirs = ((align.transform_points(OBAMA_KPS, cv_m) - target) ** 2).sum()
    assert ours <= theirs + 1e-6
    crop = align.warp_crop(obama, m, 512)
    assert crop.shape == (512, 512, 3) and crop.dtype == np.uint8


def _round_trip_error(image, kps, size, interpolation):
    m = align.crop_affine(kps, ARCFACE_128, 128, size)
    crop = align.warp_crop(image, m, size, interpolation)
    back = cv2.warpAffine(crop.astype(np.float32), align.invert(m), image.shape[1::-1], flags=interpolation)
    cover = cv2.warpAffine(np.ones((size, size), np.float32), align.invert(m), image.shape[1::-1])
    inside = cv2.erode((cover > 0.999).astype(np.uint8), np.ones((9, 9))) > 0
    return np.abs(np.rint(back).clip(0, 255) - image)[inside].mean()


def test_lanczos_round_trip_at_native_scale_costs_under_one_level(obama):
    m = align.crop_affine(OBAMA_KPS, ARCFACE_128, 128)
    f = align.affine_scale(m)
    small = cv2.resize(obama, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    lanczos = _round_trip_error(small, OBAMA_KPS * f, 128, cv2.INTER_LANCZOS4)
    bilinear = _round_trip_error(small, OBAMA_KPS * f, 128, cv2.INTER_LINEAR)
    assert align.CROP_INTERPOLATION == cv2.INTER_LANCZOS4
    assert lanczos < 1.0 < bilinear


def test_large_faces_are_area_averaged_before_the_warp():
    # Pixel noise: a 4x shrink that merely samples it keeps all its contrast (aliasing); an area
    # average of 4x4 blocks divides its standard deviation by about 4.
    stripes = np.random.default_rng(0).integers(0, 256, (800, 800, 3)).astype(np.uint8)
    kps = np.asarray(ARCFACE_128) * 4 + 100  # a face 4x the crop's scale
    m = align.crop_affine(kps, ARCFACE_128, 128)
    assert align.affine_scale(m) == pytest.approx(0.25)
    crop = align.warp_crop(stripes, m, 128).astype(np.float32)
    naive = cv2.warpAffine(stripes, m, (128, 128), flags=cv2.INTER_LANCZOS4).astype(np.float32)
    assert abs(crop.mean() - 127.5) < 3 and crop.std() < 25
    assert naive.std() > 60


def test_crop_faces_batches_and_footprint_bounds_the_paste():
    image = np.zeros((300, 400, 3), np.uint8)
    kps = [np.asarray(ARCFACE_128) + np.array((50, 60)), np.asarray(ARCFACE_128) * 0.5 + np.array((250, 20))]
    crops, affines = align.crop_faces(image, kps, ARCFACE_128, 128, 256)
    assert crops.shape == (2, 256, 256, 3) and affines.shape == (2, 2, 3)
    assert align.crop_footprint(affines[0], 256, image.shape) == (47, 57, 181, 191)
    x1, y1, x2, y2 = align.crop_footprint(affines[1], 256, image.shape)
    assert (x1, y1) == (247, 17) and x2 <= 400 and y2 <= 300
    far = align.crop_affine(np.asarray(ARCFACE_128) + np.array((5000, 0)), ARCFACE_128, 128)
    assert align.crop_footprint(far, 128, image.shape) is None
    empty, none = align.crop_faces(image, [], ARCFACE_128, 128)
    assert empty.shape == (0, 128, 128, 3) and none.shape == (0, 2, 3)
