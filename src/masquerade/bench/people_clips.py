"""Group footage with known people, made from the bundled public-domain portraits.

Each clip is a list of shots; in a shot, actors (a portrait's head and shoulders, feathered onto a
wall) move along straight paths, sway a little and breathe in scale, and the one drawn later passes in
front. The truth is known per frame: which person each visible face is and where its box lies, so
identity clustering and per-person mapping can be scored frame by frame. ``obama.jpg`` and
``obama2.jpg`` are two photos of one person, so a clip can show that person in two looks.

The clips cover what breaks identity in real footage: cuts between people, two people side by side,
one leaving the frame and coming back, two crossing (one occluding the other), and a group of three
smaller faces with a crossing, a cut and mirrored photos.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.types import Image

FACE_BOXES = {
    "obama": (373, 127, 614, 421),
    "obama2": (190, 274, 479, 634),
    "biden": (425, 228, 714, 565),
    "astronaut": (178, 70, 272, 177),
}
"""Face boxes (x1, y1, x2, y2) in the sample photos, checked by eye on the mesh drawn over them."""
PERSON_OF = {"obama": "obama", "obama2": "obama", "biden": "biden", "astronaut": "astronaut"}
"""The person each photo shows."""


@dataclass(frozen=True)
class Actor:
    """One portrait moving in a shot: the face centre goes from ``start`` to ``end`` (fractions of the
    frame's width and height) at face width ``width`` (fraction of the frame width)."""

    photo: str
    start: tuple[float, float]
    end: tuple[float, float] | None = None
    width: float = 0.2
    sway: float = 4.0
    """Amplitude of the in-plane head roll, degrees."""
    phase: float = 0.0
    flip: bool = False

    def at(self, u: float) -> tuple[float, float]:
        """Face centre (fractions) at ``u`` in [0, 1] of the shot."""
        end = self.end or self.start
        return (self.start[0] + (end[0] - self.start[0]) * u, self.start[1] + (end[1] - self.start[1]) * u)


@dataclass(frozen=True)
class Shot:
    frames: int
    actors: tuple[Actor, ...]
    """Drawn in order: a later actor passes in front of an earlier one."""


@dataclass(frozen=True)
class TrueFace:
    person: str
    box: tuple[float, float, float, float]
    """Face box in the frame (x1, y1, x2, y2), as far as it lies inside the frame."""
    visible: float
    """Share of the face box inside the frame and not covered by an actor in front."""


@dataclass(frozen=True)
class PeopleClip:
    name: str
    path: Path
    fps: int
    size: tuple[int, int]
    truth: tuple[tuple[TrueFace, ...], ...]
    """Per frame, the faces shown."""
    people: tuple[str, ...] = field(default=())
    """The distinct people in the clip, in order of first appearance."""


def script(name: str, fps: int = 25, seconds: float = 1.0) -> tuple[Shot, ...]:
    """The shots of the named clip; ``seconds`` scales every shot's length."""

    def n(s: float) -> int:
        return max(2, round(s * seconds * fps))

    if name == "cuts":  # one person per shot, cut to another, then back in a different photo
        return (
            Shot(n(1.6), (Actor("obama", (0.45, 0.45), (0.55, 0.5), 0.24),)),
            Shot(n(1.6), (Actor("biden", (0.55, 0.5), (0.45, 0.45), 0.22),)),
            Shot(n(1.6), (Actor("obama2", (0.5, 0.5), (0.5, 0.45), 0.2, flip=True),)),
            Shot(n(1.2), (Actor("astronaut", (0.4, 0.5), (0.6, 0.5), 0.2),)),
        )
    if name == "side_by_side":  # two people, steady, side by side, cut to them in swapped places
        return (
            Shot(n(2.4), (Actor("obama", (0.3, 0.5), (0.33, 0.48), 0.2),
                          Actor("biden", (0.7, 0.5), (0.67, 0.52), 0.2, phase=1.0))),
            Shot(n(1.6), (Actor("biden", (0.3, 0.5), (0.33, 0.5), 0.2),
                          Actor("obama2", (0.7, 0.48), (0.68, 0.5), 0.18, phase=2.0))),
        )
    if name == "leave_return":  # one stays, the other walks out of the frame and comes back
        third = n(1.2)
        return (
            Shot(third, (Actor("obama", (0.3, 0.5), (0.3, 0.5), 0.2),
                         Actor("astronaut", (0.7, 0.5), (1.3, 0.5), 0.2, phase=1.0))),
            Shot(third, (Actor("obama", (0.3, 0.5), (0.32, 0.5), 0.2),)),
            Shot(third, (Actor("obama", (0.32, 0.5), (0.3, 0.5), 0.2),
                         Actor("astronaut", (1.3, 0.5), (0.7, 0.5), 0.2, phase=1.0))),
        )
    if name == "crossing":  # two people walk past each other, the second in front; then back
        return (
            Shot(n(2.0), (Actor("obama", (0.2, 0.48), (0.8, 0.5), 0.2),
                          Actor("biden", (0.8, 0.52), (0.2, 0.5), 0.2, phase=1.0))),
            Shot(n(2.0), (Actor("obama", (0.8, 0.5), (0.2, 0.48), 0.2),
                          Actor("biden", (0.2, 0.5), (0.8, 0.52), 0.2, phase=1.0))),
        )
    if name == "group":  # three smaller faces, one pair crossing; a cut to two in other photos; one alone
        return (
            Shot(n(2.4), (Actor("obama", (0.18, 0.45), (0.2, 0.47), 0.14),
                          Actor("astronaut", (0.55, 0.5), (0.85, 0.5), 0.14, phase=1.0),
                          Actor("biden", (0.85, 0.55), (0.5, 0.52), 0.15, phase=2.0))),
            Shot(n(1.6), (Actor("biden", (0.3, 0.5), (0.33, 0.5), 0.16),
                          Actor("obama2", (0.7, 0.5), (0.67, 0.48), 0.15, flip=True))),
            Shot(n(1.2), (Actor("astronaut", (0.5, 0.5), (0.52, 0.48), 0.2, flip=True),)),
        )
    raise ValueError(f"unknown clip {name!r}; choose from {', '.join(CLIPS)}")


CLIPS = ("cuts", "side_by_side", "leave_return", "crossing", "group")


@dataclass(frozen=True)
class _Cutout:
    """A portrait's head and shoulders with a feathered alpha, and its face box inside the cut-out."""

    rgba: NDArray[np.float32]
    face: tuple[float, float, float, float]


def _cutout(image: Image, photo: str, flip: bool) -> _Cutout:
    x1, y1, x2, y2 = FACE_BOXES[photo]
    fw, fh = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    h, w = image.shape[:2]
    left, right = max(int(cx - 1.1 * fw), 0), min(int(cx + 1.1 * fw), w)
    top, bottom = max(int(cy - 1.1 * fh), 0), min(int(cy + 1.3 * fh), h)
    crop = image[top:bottom, left:right].astype(np.float32)
    alpha = np.zeros(crop.shape[:2], np.float32)
    centre = (int(cx - left), int(cy - top - 0.05 * fh))
    cv2.ellipse(alpha, centre, (int(0.95 * fw), int(1.15 * fh)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), 0.08 * fw)
    face = (x1 - left, y1 - top, x2 - left, y2 - top)
    rgba = np.dstack([crop, alpha])
    if flip:
        rgba = rgba[:, ::-1]
        face = (crop.shape[1] - face[2], face[1], crop.shape[1] - face[0], face[3])
    return _Cutout(np.ascontiguousarray(rgba), face)


def _wall(height: int, width: int) -> NDArray[np.float32]:
    """A plain, slightly textured wall (no face-like structure)."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 140 + 25 * np.sin(xx / (0.17 * width)) + 15 * np.cos(yy / (0.23 * height))
    noise = cv2.GaussianBlur(rng.normal(0, 10, (height, width)).astype(np.float32), (0, 0), 2)
    grey = np.clip(base + noise, 0, 255)
    return np.dstack([grey * 0.93, grey, grey * 1.04]).clip(0, 255)


def _place(canvas: NDArray[np.float32], cut: _Cutout, actor: Actor, u: float, t: float,
           ) -> tuple[tuple[float, float, float, float], NDArray[np.bool_]]:
    """Draw one actor; return its face box and the pixels it covers (alpha > 0.5)."""
    height, width = canvas.shape[:2]
    fx1, fy1, fx2, fy2 = cut.face
    fcx, fcy = (fx1 + fx2) / 2, (fy1 + fy2) / 2
    px, py = actor.at(u)
    breathe = 1.0 + 0.04 * math.sin(2 * math.pi * (t / 2.9) + actor.phase)
    scale = actor.width * width / (fx2 - fx1) * breathe
    angle = actor.sway * math.sin(2 * math.pi * (t / 2.3) + actor.phase)
    matrix = cv2.getRotationMatrix2D((fcx, fcy), angle, scale)
    matrix[:, 2] += (px * width - fcx, py * height - fcy)
    warped = cv2.warpAffine(cut.rgba, matrix, (width, height), flags=cv2.INTER_AREA,
                            borderMode=cv2.BORDER_CONSTANT)
    alpha = warped[..., 3:4]
    canvas[:] = canvas * (1 - alpha) + warped[..., :3] * alpha
    corners = np.array([[fx1, fy1, 1], [fx2, fy1, 1], [fx2, fy2, 1], [fx1, fy2, 1]], np.float64) @ matrix.T
    box = (float(corners[:, 0].min()), float(corners[:, 1].min()),
           float(corners[:, 0].max()), float(corners[:, 1].max()))
    return box, alpha[..., 0] > 0.5


def _visible(box: tuple[float, ...], covers: Sequence[NDArray[np.bool_]], size: tuple[int, int]) -> tuple[
        tuple[float, float, float, float], float]:
    """The part of ``box`` inside the frame, and the share of the whole box inside and not covered."""
    width, height = size
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 <= cx1 or cy2 <= cy1:
        return (cx1, cy1, cx1, cy1), 0.0
    ix1, iy1, ix2, iy2 = int(cx1), int(cy1), math.ceil(cx2), math.ceil(cy2)
    free = np.ones((iy2 - iy1, ix2 - ix1), bool)
    for cover in covers:
        free &= ~cover[iy1:iy2, ix1:ix2]
    return (cx1, cy1, cx2, cy2), min(float(free.sum()) / area, 1.0)


def render(shots: Sequence[Shot], photos: Mapping[str, Image], size: tuple[int, int], fps: int):
    """Frames (BGR uint8) and the truth of each, one at a time."""
    width, height = size
    wall = _wall(height, width)
    cutouts: dict[tuple[str, bool], _Cutout] = {}
    index = 0
    for shot in shots:
        for k in range(shot.frames):
            u = k / max(shot.frames - 1, 1)
            t = index / fps
            canvas = wall.copy()
            placed = []
            for actor in shot.actors:
                key = (actor.photo, actor.flip)
                if key not in cutouts:
                    cutouts[key] = _cutout(photos[actor.photo], actor.photo, actor.flip)
                box, cover = _place(canvas, cutouts[key], actor, u, t)
                placed.append((actor, box, cover))
            truth = []
            for i, (actor, box, _) in enumerate(placed):
                shown, share = _visible(box, [c for _, _, c in placed[i + 1:]], size)
                if share > 0:
                    truth.append(TrueFace(PERSON_OF[actor.photo], shown, share))
            yield canvas.clip(0, 255).astype(np.uint8), tuple(truth)
            index += 1


def write_people_clip(name: str, folder: Path, photos: Mapping[str, Image],
                      size: tuple[int, int] = (640, 360), fps: int = 25, seconds: float = 1.0,
                      crf: int = 20) -> PeopleClip:
    """Encode the named clip as H.264 MP4 in ``folder``; return it with its per-frame truth."""
    path = Path(folder) / f"{name}.mp4"
    truth: list[tuple[TrueFace, ...]] = []
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": str(crf), "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for index, (image, faces) in enumerate(render(script(name, fps, seconds), photos, size, fps)):
            frame = av.VideoFrame.from_ndarray(image, "bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
            truth.append(faces)
        out.mux(stream.encode())
    people = tuple(dict.fromkeys(f.person for faces in truth for f in faces))
    return PeopleClip(name, path, fps, size, tuple(truth), people)


def load_photos(folder: Path) -> dict[str, Image]:
    """The four bundled portraits from ``examples/`` (or a folder with the same files)."""
    files = {"obama": "obama.jpg", "obama2": "obama2.jpg", "biden": "biden.jpg", "astronaut": "astronaut.png"}
    photos = {}
    for key, file in files.items():
        image = cv2.imread(str(Path(folder) / file), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f"cannot read {Path(folder) / file}")
        photos[key] = image
    return photos


__all__ = ["CLIPS", "PeopleClip", "TrueFace", "load_photos", "render", "script", "write_people_clip"]
