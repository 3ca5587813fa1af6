"""One-Euro filter: less jitter at rest, little lag in motion, parameters independent of face size."""

from __future__ import annotations

import math

import numpy as np
import pytest

from masquerade.geometry.smoothing import OneEuroFilter, OneEuroParams, smoothing_factor

FPS = 25.0
FACE = 200.0  # face size in pixels


def _points(n: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, FACE, (n, 2))


def _run(filt: OneEuroFilter, frames: list[np.ndarray], scale: float = FACE) -> list[np.ndarray]:
    return [filt(f, i / FPS, scale) for i, f in enumerate(frames)]


def test_smoothing_factor_is_the_first_order_low_pass_weight() -> None:
    dt = 1 / FPS
    tau = 1 / (2 * math.pi * 3.0)
    assert float(smoothing_factor(3.0, dt)) == pytest.approx(1 / (1 + tau / dt))
    assert float(smoothing_factor(1e9, dt)) == pytest.approx(1.0)


def test_first_sample_passes_through_and_reset_forgets() -> None:
    filt = OneEuroFilter()
    x = _points()
    np.testing.assert_allclose(filt(x, 0.0, FACE), x, atol=1e-4)
    filt(x + 50, 1 / FPS, FACE)
    filt.reset()
    np.testing.assert_allclose(filt(x + 100, 2 / FPS, FACE), x + 100, atol=1e-4)


def test_jitter_of_a_still_face_is_reduced() -> None:
    rng = np.random.default_rng(1)
    base = _points()
    noisy = [base + rng.normal(0, 1.0, base.shape) for _ in range(100)]
    out = np.array(_run(OneEuroFilter(), noisy))[20:]
    raw_std = float(np.std(np.array(noisy)[20:] - base))
    smooth_std = float(np.std(out - base))
    assert raw_std == pytest.approx(1.0, abs=0.05)
    assert smooth_std < 0.6 * raw_std


@pytest.mark.parametrize("sizes_per_second", [1.0, 4.0])
def test_lag_on_fast_linear_motion_is_small(sizes_per_second: float) -> None:
    base = _points()
    step = sizes_per_second * FACE / FPS  # 8 or 32 px per frame
    frames = [base + np.array([i * step, 0.0]) for i in range(50)]
    out = _run(OneEuroFilter(), frames)
    lag = float(np.mean([(f - o)[:, 0].mean() for f, o in zip(frames[20:], out[20:], strict=True)]))
    # Steady lag of a One-Euro filter is about scale / (2 pi beta) px, whatever the speed (1.6 px on
    # this 200 px face at the default beta of 20).
    assert 0 < lag < 1.2 * FACE / (2 * math.pi * OneEuroParams().beta)
    assert lag < 0.2 * step


def test_parameters_do_not_depend_on_face_size() -> None:
    rng = np.random.default_rng(2)
    base = _points()
    frames = [base + np.array([i * 5.0, 0.0]) + rng.normal(0, 0.5, base.shape) for i in range(30)]
    small = _run(OneEuroFilter(), frames, scale=FACE)
    big = _run(OneEuroFilter(), [f * 3 for f in frames], scale=3 * FACE)
    np.testing.assert_allclose(np.array(big), 3 * np.array(small), rtol=1e-4, atol=1e-3)


def test_mouth_opening_is_followed_while_the_head_is_still() -> None:
    base = _points()
    frames = []
    for i in range(40):
        f = base.copy()
        f[:10, 1] += min(max(i - 20, 0), 4) * 5.0  # 10 points move 20 px in 4 frames, then stay
        frames.append(f)
    out = _run(OneEuroFilter(), frames)
    err = np.abs(out[26][:10, 1] - frames[26][:10, 1]).mean()
    assert err < 3.0  # the 20 px opening is mostly followed two frames after it ended
    # ... while the still points around it did not move.
    assert np.abs(out[26][10:] - base[10:]).max() < 0.5


def test_extra_columns_are_filtered_along() -> None:
    filt = OneEuroFilter()
    x = np.c_[_points(), np.zeros(100)]
    filt(x, 0.0, FACE)
    y = filt(x + np.array([0.0, 0.0, 10.0]), 1 / FPS, FACE)
    assert y.shape == (100, 3)
    assert 0 < y[:, 2].mean() < 10  # depth jumped but x, y did not: it is smoothed at min_cutoff


def test_time_that_does_not_advance_restarts_the_filter() -> None:
    filt = OneEuroFilter()
    x = _points()
    filt(x, 1.0, FACE)
    np.testing.assert_allclose(filt(x + 30, 1.0, FACE), x + 30, atol=1e-4)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        OneEuroFilter()(np.zeros(5), 0.0)
    with pytest.raises(ValueError):
        OneEuroParams(min_cutoff=0)
    with pytest.raises(ValueError):
        OneEuroParams(beta=-1)
