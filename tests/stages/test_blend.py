"""Blending helpers: masks, feathering, colour transfer, relighting and ROI Poisson blending."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from masquerade._stages import blend


def _disc(shape: tuple[int, int], centre: tuple[int, int], radius: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, radius, 255, -1)
    return mask


def _texture(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.integers(40, 215, (*shape, 3)).astype(np.uint8), (0, 0), 1.5)


def test_polygon_mask_grow_and_rect() -> None:
    square = np.array([[20, 20], [60, 20], [60, 60], [20, 60]], np.float32)
    mask = blend.polygon_mask((100, 100), [square])
    assert np.count_nonzero(mask) == 41 * 41
    grown = blend.polygon_mask((100, 100), [square], grow=3)
    assert blend.mask_rect(grown) == (17, 17, 47, 47)
    assert blend.mask_rect(mask, margin=50) == (0, 0, 100, 100)  # clipped to the array
    assert blend.mask_rect(np.zeros((10, 10), np.uint8)) is None


def test_erode_and_dilate_move_the_edge_by_the_distance() -> None:
    disc = _disc((200, 200), (100, 100), 50)
    area = np.count_nonzero(disc)
    assert np.count_nonzero(blend.erode(disc, 10)) == pytest.approx(np.pi * 40**2, rel=0.05)
    assert np.count_nonzero(blend.dilate(disc, 10)) == pytest.approx(np.pi * 60**2, rel=0.05)
    assert blend.erode(disc, 0) is disc and np.count_nonzero(blend.dilate(disc, 0)) == area
    # The array border counts as outside: a mask touching it shrinks away from it.
    full = np.full((50, 50), 255, np.uint8)
    assert blend.erode(full, 5)[:5].max() == 0


def test_feather_stays_inside_the_mask_and_ramps_smoothly() -> None:
    disc = _disc((200, 200), (100, 100), 60)
    soft = blend.feather(disc, 20)
    assert soft.dtype == np.float32
    assert soft[disc == 0].max() == 0.0  # never reaches outside
    assert soft[100, 100] == 1.0 and soft.min() >= 0.0 and soft.max() <= 1.0
    profile = soft[100, 40:101]  # from the edge to the centre
    assert np.all(np.diff(profile) >= -1e-6)
    assert 0.3 < soft[100, 50] < 0.7  # about half way, 10 px in
    assert np.array_equal(blend.feather(disc, 0.5), (disc > 0).astype(np.float32))


def test_fade_out_keeps_the_mask_and_a_gap_at_zero() -> None:
    disc = _disc((200, 200), (100, 100), 30)
    weight = blend.fade_out(disc, gap=5, radius=10)
    assert weight[disc > 0].max() == 0.0
    assert weight[100, 100 + 30 + 4] == 0.0  # within the gap
    assert 0.0 < weight[100, 100 + 30 + 10] < 1.0  # on the ramp
    assert weight[100, 100 + 30 + 16] == 1.0 and weight[0, 0] == 1.0


def test_fill_holes_and_reachable_from_outside() -> None:
    region = _disc((200, 200), (100, 100), 80)
    holed = region.copy()
    cv2.circle(holed, (100, 100), 10, 0, -1)
    assert np.array_equal(blend.fill_holes(holed), region)
    bad = np.zeros_like(region)
    cv2.rectangle(bad, (90, 10), (110, 60), 255, -1)  # enters from the region's top edge
    cv2.circle(bad, (100, 140), 8, 255, -1)  # an island inside: a mole, not hair
    reached = blend.reachable_from_outside(bad, region)
    assert reached[40, 100] == 255 and reached[140, 100] == 0
    assert not np.any(reached[region == 0])


def test_colour_match_moves_statistics_with_clamped_ratios() -> None:
    rng = np.random.default_rng(1)
    lab = rng.normal((120, 130, 140), (10, 4, 4), (64, 64, 3)).astype(np.float32)
    ref = rng.normal((150, 140, 120), (15, 40, 2), (64, 64, 3)).astype(np.float32)
    mask = np.full((64, 64), 255, np.uint8)
    scale, offset = blend.colour_match(lab, mask, ref, mask, std_ratio=(0.6, 1.6))
    out = lab * scale + offset
    mean, std = (v.ravel() for v in cv2.meanStdDev(out))
    assert mean == pytest.approx([150, 140, 120], abs=0.5)
    assert std[0] == pytest.approx(15, rel=0.05)  # ratio 1.5: within the clamp
    assert std[1] == pytest.approx(4 * 1.6, rel=0.05)  # ratio 10: clamped to 1.6
    assert std[2] == pytest.approx(4 * 0.6, rel=0.05)  # ratio 0.5: clamped to 0.6
    empty = np.zeros_like(mask)
    assert np.array_equal(blend.colour_match(lab, empty, ref, mask)[0], np.ones(3, np.float32))


def test_color_transfer_brings_one_real_face_towards_anothers_colour(obama, biden) -> None:
    a, b = obama[200:330, 430:560], biden[350:480, 500:630]  # cheeks and nose of each
    mask = np.full(a.shape[:2], 255, np.uint8)
    before = np.abs(blend.to_lab(a).mean((0, 1)) - blend.to_lab(b).mean((0, 1)))
    out = blend.color_transfer(a, mask, b, mask)
    after = np.abs(blend.to_lab(out).mean((0, 1)) - blend.to_lab(b).mean((0, 1)))
    assert before.max() > 10 and after.max() < 2.5
    assert out.shape == a.shape and out.dtype == np.uint8


def test_lab_round_trip_is_close() -> None:
    image = _texture((40, 40))
    assert np.abs(blend.from_lab(blend.to_lab(image)).astype(int) - image).max() <= 3


def test_relight_field_carries_broad_shading_not_detail() -> None:
    h, w = 120, 120
    image = blend.to_lab(_texture((h, w), 2))
    shading = np.linspace(-30, 30, w, dtype=np.float32)[None, :, None] * np.float32([1, 0, 0])
    detail = blend.to_lab(_texture((h, w), 3)) - 128.0  # unrelated fine texture
    reference = image + shading + detail * np.float32([0.3, 0, 0])
    weights = np.full((h, w), 255, np.uint8)
    field = blend.relight_field(image, reference, weights, sigma=10, strength=(1, 1, 1))
    centre = (slice(30, 90), slice(30, 90))
    assert np.abs(field[centre][..., 0] - shading[:, 30:90, 0]).mean() < 3.0
    assert np.abs(field[..., 1:]).max() < 2.0


def test_poisson_field_matches_the_target_at_the_edge_and_keeps_source_detail() -> None:
    target = blend.to_lab(_texture((160, 140), 4))
    source = blend.to_lab(_texture((160, 140), 5))
    lit = source + np.float32([25, 6, -6])  # the same face under another light
    mask = _disc((160, 140), (70, 80), 50)
    inner = blend.erode(mask, 6) > 0
    for max_side in (400, 48):  # solved at full size and on a scaled-down copy
        out = lit + blend.poisson_field(lit, target, mask, max_side=max_side, robust=False)
        # Inside, the source's detail stays; along the edge the result meets the target's level.
        detail = (out - source)[inner]
        assert np.abs(detail - detail.mean(axis=0)).mean() < 2.0
        ring = (mask > 0) & ~inner
        assert np.abs((out - target)[ring].mean(axis=0)).max() < 6.0
    assert not np.any(blend.poisson_field(lit, target, mask)[:10])  # outside the mask's box


def test_robust_poisson_ignores_a_dark_strand_across_the_edge() -> None:
    target = np.full((160, 160, 3), (150, 140, 135), np.float32)
    source = target.copy()
    mask = _disc((160, 160), (80, 80), 55)
    target[20:80, 74:86] = (20, 128, 128)  # a dark strand of hair crossing the top edge
    plain = blend.poisson_field(source, target, mask, max_side=200, robust=False)
    robust = blend.poisson_field(source, target, mask, max_side=200, robust=True)
    centre = plain[80, 80, 0], robust[80, 80, 0]
    assert centre[0] < -5  # the strand's darkness spreads to the middle of the face
    assert abs(centre[1]) < 2


def test_seamless_blend_changes_only_the_mask(obama, biden) -> None:
    target = obama[100:400, 350:650].copy()
    source = cv2.resize(biden[200:600, 420:720], (300, 300))
    mask = _disc((300, 300), (150, 150), 90)
    out = blend.seamless_blend(target, source, mask, feather_px=12)
    assert np.array_equal(out[mask == 0], target[mask == 0])
    assert np.abs(out[150, 150].astype(int) - target[150, 150]).max() > 0
    assert np.array_equal(blend.seamless_blend(target, source, np.zeros_like(mask)), target)


def test_alpha_blend_ends() -> None:
    a, b = _texture((30, 30), 6), _texture((30, 30), 7)
    assert np.array_equal(blend.alpha_blend(a, b, np.zeros((30, 30), np.float32)), a)
    assert np.array_equal(blend.alpha_blend(a, b, np.ones((30, 30), np.float32)), b)
    half = blend.alpha_blend(a, b, np.full((30, 30), 0.5, np.float32)).astype(int)
    assert np.abs(half - (a.astype(int) + b) / 2).max() <= 1
