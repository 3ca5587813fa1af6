"""Synthetic group photos composed from the bundled public-domain portraits.

``compose_group`` pastes the sample faces (with hair and some background) at many sizes, in-plane
rotations and mirrored onto a plain wall; ``turned_group`` re-renders each head turned 60 degrees from
its own 3-D mesh first. The detector's recall tests and the quality benchmark share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

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


def _signed_area(tri: np.ndarray) -> float:
    (ax, ay), (bx, by) = tri[1] - tri[0], tri[2] - tri[0]
    return float(ax * by - ay * bx)


def turn_head(image: np.ndarray, landmarks: np.ndarray, degrees: float) -> np.ndarray:
    """Re-render the face turned about the vertical axis, from its own 3D mesh.

    The mesh (x, y, z in pixels) is Delaunay-triangulated, rotated, projected orthographically and
    painted back to front; the original face region is inpainted first. Crude (hair and ears stay
    frontal), but the features move like a real turned head's: the far eye narrows, the nose crosses the
    cheek line.
    """
    h, w = image.shape[:2]
    pts = landmarks[:, :2].astype(np.float64)
    subdiv = cv2.Subdiv2D((0, 0, w, h))
    index = {}
    for i, p in enumerate(np.float32(pts)):
        subdiv.insert((float(p[0]), float(p[1])))
        index[(round(float(p[0]), 2), round(float(p[1]), 2))] = i
    triangles = []
    for tri in subdiv.getTriangleList().reshape(-1, 3, 2):
        idx = [index.get((round(float(x), 2), round(float(y), 2))) for x, y in tri]
        if None not in idx and len(set(idx)) == 3:
            triangles.append(idx)
    tris = np.array(triangles)
    t = np.radians(degrees)
    cx = pts[:, 0].mean()
    dx, z = pts[:, 0] - cx, landmarks[:, 2].astype(np.float64)
    turned = np.stack([dx * np.cos(t) + z * np.sin(t) + cx, pts[:, 1]], axis=1)
    depth = -dx * np.sin(t) + z * np.cos(t)
    hole = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(hole, cv2.convexHull(pts.astype(np.int32)), 255)
    out = cv2.inpaint(image, cv2.dilate(hole, np.ones((9, 9), np.uint8)), 3, cv2.INPAINT_TELEA)
    for tri in tris[np.argsort(-depth[tris].mean(axis=1))]:
        src, dst = pts[tri].astype(np.float32), turned[tri].astype(np.float32)
        before, after = _signed_area(src), _signed_area(dst)
        if before * after <= 0 or abs(after) < 0.5:
            continue  # turned away from the camera
        x, y, bw, bh = cv2.boundingRect(dst)
        m = cv2.getAffineTransform(src, dst - np.float32([x, y]))
        patch = cv2.warpAffine(image, m, (bw, bh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        inside = np.zeros((bh, bw), np.uint8)
        cv2.fillConvexPoly(inside, np.round(dst - [x, y]).astype(np.int32), 255)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        if x1 > x0 and y1 > y0:
            sel = inside[y0 - y:y1 - y, x0 - x:x1 - x] > 0
            out[y0:y1, x0:x1][sel] = patch[y0 - y:y1 - y, x0 - x:x1 - x][sel]
    return out


def _head(image: np.ndarray, analyser: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A crop around the photo's one head (inpainting a whole 2000-px photo is slow), with the
    face's landmarks and box in the crop's pixels."""
    (face,) = analyser.detect(image)
    x1, y1, x2, y2 = face.bbox
    mx, my = int(0.8 * (x2 - x1)), int(0.8 * (y2 - y1))
    ox, oy = max(int(x1) - mx, 0), max(int(y1) - my, 0)
    crop = np.ascontiguousarray(image[oy:int(y2) + my, ox:int(x2) + mx])
    shift = np.float32([ox, oy])
    return crop, face.landmarks - np.append(shift, 0), face.bbox - np.tile(shift, 2)


def turned_group(
    samples: Mapping[str, np.ndarray], analyser: Any
) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Each sample's head turned 60 degrees (both ways), faces 45..100 px wide, on a wall.

    ``analyser`` (a ``MeshAnalyser``) finds each sample's mesh. Returns the image and (cx, cy, frontal
    face width) per face.
    """
    h, w = 720, 1280
    canvas = _background(h, w).astype(np.float32)
    placed = []
    widths = (45, 100, 70, 55, 85, 60, 50, 75)
    jobs = [(n, sign) for n in samples for sign in (1, -1)]
    crops = {name: _head(image, analyser) for name, image in samples.items()}
    for i, (name, sign) in enumerate(jobs):
        image, landmarks, (x1, y1, x2, y2) = crops[name]
        render = turn_head(image, landmarks, 60 * sign)
        fcx, fcy = (x1 + x2) / 2, (y1 + y2) / 2
        s = widths[i] / (x2 - x1)
        cx, cy = 160 + (i % 4) * 320, 190 + (i // 4) * 340
        m = np.float32([[s, 0, cx - s * fcx], [0, s, cy - s * fcy]])
        warped = cv2.warpAffine(render, m, (w, h), flags=cv2.INTER_AREA)
        oval = np.zeros(image.shape[:2], np.float32)
        axes = (int((x2 - x1) * 1.1), int((y2 - y1) * 1.1))
        cv2.ellipse(oval, (int(fcx), int(fcy)), axes, 0, 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(cv2.warpAffine(oval, m, (w, h)), (0, 0), 3)[..., None]
        canvas = canvas * (1 - alpha) + warped.astype(np.float32) * alpha
        placed.append((float(cx), float(cy), float(widths[i])))
    return canvas.clip(0, 255).astype(np.uint8), placed


@dataclass(frozen=True)
class Actor:
    """One head in a group clip: where it is, how big and how turned, as functions of the frame."""

    source: str
    width: float
    path: Any
    """frame -> (cx, cy, roll degrees, yaw degrees); cx outside the frame means the head has left."""
    flip: bool = False


CLIP_YAWS = (-60, -45, -30, -15, 0, 15, 30, 45, 60)


def _clip_actors(frames: int, width: int, height: int) -> tuple[Actor, ...]:
    """Five heads: one turning from side to side, one walking out of the frame and back in, one rolling,
    one sweeping its yaw, a small one coming in late from the left."""
    n = max(frames - 1, 1)

    def turning(i: int) -> tuple[float, float, float, float]:
        x = 0.2 * width + 60 * np.sin(i / n * 2 * np.pi)
        return x, 0.36 * height, 0.0, 60 * np.sin(i / n * 4 * np.pi)

    def leaving(i: int) -> tuple[float, float, float, float]:
        # Out to the right during the middle third of the clip, then back.
        u = i / n
        x = 0.55 * width + (0.75 * width) * np.clip(np.sin(u * np.pi) * 1.6 - 0.3, 0.0, 1.0)
        return x, 0.3 * height, 0.0, 0.0

    def rolling(i: int) -> tuple[float, float, float, float]:
        return 0.78 * width, 0.7 * height, 20 * np.sin(i / n * 6 * np.pi), 30.0

    def sweeping(i: int) -> tuple[float, float, float, float]:
        return 0.42 * width, 0.72 * height + 10 * np.sin(i / n * 2 * np.pi), 0.0, -45 + 90 * i / n

    def arriving(i: int) -> tuple[float, float, float, float]:
        u = i / n
        return -0.1 * width + 0.25 * width * np.clip((u - 0.25) * 3, 0.0, 1.0), 0.62 * height, 0.0, 15.0

    return (Actor("obama", 0.117 * width, turning), Actor("biden", 0.094 * width, leaving),
            Actor("astronaut", 0.07 * width, rolling, flip=True), Actor("obama2", 0.08 * width, sweeping),
            Actor("biden", 0.055 * width, arriving, flip=True))


def group_clip(
    samples: Mapping[str, np.ndarray], analyser: Any, frames: int = 150, size: tuple[int, int] = (1280, 720)
) -> list[np.ndarray]:
    """Frames of a synthetic group clip: the sample heads (re-rendered turned, see ``turn_head``)
    moving, turning, rolling, leaving the frame and coming back in, on a plain wall."""
    width, height = size
    wall = _background(height, width)
    heads: dict[str, tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]]] = {}
    for name, image in samples.items():
        crop, landmarks, box = _head(image, analyser)
        renders = {yaw: crop if yaw == 0 else turn_head(crop, landmarks, yaw) for yaw in CLIP_YAWS}
        heads[name] = (box, crop, renders)
    out = []
    actors = _clip_actors(frames, width, height)
    for i in range(frames):
        canvas = wall.astype(np.float32)
        for actor in actors:
            cx, cy, roll, yaw = actor.path(i)
            box, crop, renders = heads[actor.source]
            render = renders[min(CLIP_YAWS, key=lambda a: abs(a - yaw))]
            x1, y1, x2, y2 = box
            fcx, fcy = (x1 + x2) / 2, (y1 + y2) / 2
            if actor.flip:
                render = render[:, ::-1]
                fcx = render.shape[1] - fcx
            s = actor.width / (x2 - x1)
            m = cv2.getRotationMatrix2D((float(fcx), float(fcy)), roll, s)
            m[:, 2] += (cx - fcx, cy - fcy)
            # Only the rectangle the head lands in is warped and blended.
            h, w = render.shape[:2]
            corners = np.float32([[0, 0], [w, 0], [0, h], [w, h]]) @ m[:, :2].T + m[:, 2]
            bx0, by0 = np.maximum(np.floor(corners.min(axis=0)).astype(int) - 8, 0)
            bx1, by1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 8, (width, height))
            if bx1 <= bx0 or by1 <= by0:
                continue
            m[:, 2] -= (bx0, by0)
            box_size = (int(bx1 - bx0), int(by1 - by0))
            warped = cv2.warpAffine(np.ascontiguousarray(render), m, box_size, flags=cv2.INTER_AREA)
            oval = np.zeros(render.shape[:2], np.float32)
            axes = (int((x2 - x1) * 0.95), int((y2 - y1) * 1.05))
            cv2.ellipse(oval, (int(fcx), int(fcy - 0.05 * (y2 - y1))), axes, 0, 0, 360, 1.0, -1)
            alpha = cv2.GaussianBlur(cv2.warpAffine(oval, m, box_size), (0, 0), 3)[..., None]
            part = canvas[by0:by1, bx0:bx1]
            canvas[by0:by1, bx0:bx1] = part * (1 - alpha) + warped.astype(np.float32) * alpha
        out.append(canvas.clip(0, 255).astype(np.uint8))
    return out
