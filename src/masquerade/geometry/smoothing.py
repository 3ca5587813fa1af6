"""One-Euro filter for point sets (landmarks, key points, box corners) over video frames.

The One-Euro filter (Casiez, Roussel and Vogel, CHI 2012) is a low-pass filter whose cut-off rises
with speed: a still face is smoothed hard (no jitter), a fast-moving one is followed closely (no lag).

Three choices differ from the textbook per-scalar filter:
- speeds are measured in *face sizes per second* (``scale`` = the face's size in pixels), so a small
  face far away and a close-up react alike;
- x and y of one point share one cut-off (filtering them separately would bend a diagonal motion);
- the cut-off follows the speed of the *whole* point set (the mean velocity: head motion) with
  ``beta``, plus each point's own motion relative to it (mouth, eyelids) with ``local_beta``. The
  mean over hundreds of landmarks is almost free of noise, so ``beta`` can be large (little lag when
  the head moves) without the noise of single points opening the filter when the head is still.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


def smoothing_factor(cutoff: NDArray[np.float64] | float, dt: float) -> NDArray[np.float64]:
    """Exponential-smoothing weight of the new sample for a first-order low-pass at ``cutoff`` Hz."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


@dataclass(frozen=True)
class OneEuroParams:
    min_cutoff: float = 1.0
    """Cut-off (Hz) when still: lower = smoother at rest, more lag when motion starts."""
    beta: float = 20.0
    """Cut-off increase (Hz) per face-size/s of the whole set's speed: higher = less lag on fast motion.
    Steady lag on a linear motion is about ``scale / (2 pi beta)`` pixels, whatever the speed."""
    local_beta: float = 10.0
    """Cut-off increase (Hz) per face-size/s of a point's motion relative to the whole set."""
    d_cutoff: float = 2.0
    """Cut-off (Hz) of the low-pass on the velocity estimate itself."""

    def __post_init__(self) -> None:
        if self.min_cutoff <= 0 or self.d_cutoff <= 0 or self.beta < 0 or self.local_beta < 0:
            raise ValueError("One-Euro cut-offs must be > 0 and beta >= 0")


class OneEuroFilter:
    """Filters an (N, D) array of points per call; columns 0-1 are x, y (pixels), the rest ride along
    (e.g. mesh depth), filtered with each point's x-y cut-off. State is one track's history."""

    def __init__(self, params: OneEuroParams = OneEuroParams()) -> None:
        self.params = params
        self._x: NDArray[np.float64] | None = None
        self._dx: NDArray[np.float64] | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, value: NDArray[np.floating], t: float, scale: float = 1.0) -> NDArray[np.float32]:
        """The filtered ``value`` at time ``t`` (seconds). ``scale`` (pixels) normalises speeds."""
        x = np.asarray(value, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < 2:
            raise ValueError(f"expected (N, D>=2) points, got {x.shape}")
        if self._x is None or self._t is None or self._x.shape != x.shape or t <= self._t:
            # First sample, a new shape, or time that did not advance: start over from this sample.
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.astype(np.float32)
        p = self.params
        dt = t - self._t
        dx = (x - self._x) / dt
        a_d = smoothing_factor(p.d_cutoff, dt)
        assert self._dx is not None
        self._dx = self._dx + a_d * (dx - self._dx)
        v = self._dx[:, :2]
        mean = v.mean(axis=0)
        local = np.hypot(v[:, 0] - mean[0], v[:, 1] - mean[1])
        speed = (p.beta * float(np.hypot(mean[0], mean[1])) + p.local_beta * local) / max(scale, 1e-6)
        alpha = smoothing_factor(p.min_cutoff + speed, dt)[:, None]
        self._x = self._x + alpha * (x - self._x)
        self._t = t
        return self._x.astype(np.float32)


__all__ = ["OneEuroFilter", "OneEuroParams", "smoothing_factor"]
