"""A synthetic group photo composed from the sample faces, for the detector's recall tests."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

# Face boxes (x1, y1, x2, y2) in the sample photos, checked by eye on the mesh drawn over them.
FACE_BOXES = {
    "obama": (373, 127, 614, 421),
    "obama2": (190, 274, 479, 634),
    "biden": (425, 228, 714, 565),
    "astronaut": (178, 70, 272, 177),
}


@dataclass(frozen=True)
class Placed:
    source: str
    width: float
    """Face width in the group photo, pixels."""
    cx: float
    cy: float
    angle: float = 0.0
    """In-plane rotation, degrees (counter-clockwise on screen, OpenCV's convention)."""
    flip: bool = False
    turn: float = 0.0
    """Fake head turn: squeeze the face horizontally by cos(turn) with a perspective (degrees)."""


GROUP_LAYOUT = (
    Placed("obama", 160, 150, 200),
    Placed("biden", 120, 400, 170, angle=20),
    Placed("astronaut", 90, 620, 150, flip=True),
    Placed("obama2", 70, 820, 140, angle=-20),
    Placed("obama", 55, 990, 130, flip=True),
    Placed("biden", 40, 1150, 120),
    Placed("astronaut", 130, 250, 520, turn=60),
    Placed("obama2", 100, 520, 540, flip=True, angle=-15),
    Placed("obama", 45, 730, 500, angle=15),
    Placed("biden", 80, 920, 520, turn=45, flip=True),
    Placed("astronaut", 60, 1130, 470),
)


def _background(h: int, w: int) -> np.ndarray:
    """A neutral, slightly textured wall: smooth gradient plus mild noise (no face-like structure)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 150 + 30 * np.sin(xx / 210.0) + 20 * np.cos(yy / 170.0)
    noise = cv2.GaussianBlur(rng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), 3)
    grey = np.clip(base + noise, 0, 255)
    return np.dstack([grey * 0.95, grey, grey * 1.05]).clip(0, 255).astype(np.uint8)


def compose_group(samples: dict[str, np.ndarray], layout=GROUP_LAYOUT, size=(720, 1280)) -> np.ndarray:
    """Paste each face (with hair and some background, feathered oval) onto the wall."""
    h, w = size
    canvas = _background(h, w).astype(np.float32)
    for p in layout:
        x1, y1, x2, y2 = FACE_BOXES[p.source]
        fw, fh = x2 - x1, y2 - y1
        fcx, fcy = (x1 + x2) / 2, (y1 + y2) / 2
        image = samples[p.source]
        if p.flip:
            image = image[:, ::-1]
            fcx = image.shape[1] - fcx
        s = p.width / fw
        # Source -> destination: scale about the face centre, rotate, move to (cx, cy).
        m = cv2.getRotationMatrix2D((fcx, fcy), p.angle, s)
        m[:, 2] += (p.cx - fcx, p.cy - fcy)
        m3 = np.vstack([m, [0, 0, 1]])
        if p.turn:
            # A head turned by `turn` degrees shows a narrower face whose far side is shorter:
            # a perspective squeeze about the face centre in the destination.
            c = np.cos(np.radians(p.turn))
            half_w, half_h = p.width / 2, p.width * fh / fw / 2
            src = np.float32([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
            k = 1 - 0.25 * np.sin(np.radians(p.turn))
            dst = np.float32([[-half_w * c, -half_h], [half_w * c, -half_h * k],
                              [half_w * c, half_h * k], [-half_w * c, half_h]])
            centre = np.float32([p.cx, p.cy])
            persp = cv2.getPerspectiveTransform(src + centre, dst + centre)
            m3 = persp @ m3
        warped = cv2.warpPerspective(np.ascontiguousarray(image), m3, (w, h), flags=cv2.INTER_AREA,
                                     borderMode=cv2.BORDER_CONSTANT)
        # Feathered oval around the (warped) head: face box grown 1.6x, so hair and neck come along.
        oval = np.zeros((image.shape[0], image.shape[1]), np.float32)
        centre, axes = (int(fcx), int(fcy - 0.1 * fh)), (int(fw * 0.85), int(fh * 0.95))
        cv2.ellipse(oval, centre, axes, 0, 0, 360, 1.0, -1)
        alpha = cv2.warpPerspective(oval, m3, (w, h), flags=cv2.INTER_LINEAR)
        alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, p.width * 0.06))[..., None]
        canvas = canvas * (1 - alpha) + warped.astype(np.float32) * alpha
    return canvas.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def group_photo(obama, obama2, biden, astronaut) -> tuple[np.ndarray, tuple[Placed, ...]]:
    samples = {"obama": obama, "obama2": obama2, "biden": biden, "astronaut": astronaut}
    return compose_group(samples), GROUP_LAYOUT
