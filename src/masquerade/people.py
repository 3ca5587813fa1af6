"""The people in a target, as ``masquerade.find_people`` finds them: ids, appearances, crops.

A ``Person`` is one identity (a cluster of face tracks): ``p1`` has the most screen time. Each person
carries a crop of their best frame, which works as a ``--reference`` (or as the REFERENCE of
``--map``), and a strip of thumbnails over time for the contact sheet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.types import Image

CONTACT_SHEET = "contact_sheet.png"
SHEET_THUMB = 96
SHEET_BEST = 160
SHEET_STRIP = 8


@dataclass(frozen=True)
class Appearance:
    """One stretch of a person on screen (one face track, or part of one split by a crossing)."""

    first_frame: int
    last_frame: int
    """Inclusive."""
    frames: int
    """Frames in which the face was found (fewer than the range when it was briefly lost)."""
    start_s: float
    end_s: float


@dataclass(frozen=True, eq=False)
class Person:
    id: str
    """``p1``, ``p2``, ... in order of screen time (then of first appearance)."""
    appearances: tuple[Appearance, ...]
    frames: int
    screen_time_s: float
    first_s: float
    last_s: float
    best_frame: int
    """The frame that shows the face best (largest, most frontal, whole)."""
    best_box: tuple[float, float, float, float]
    """The face's box in ``best_frame`` (x1, y1, x2, y2, pixels)."""
    embedding: NDArray[np.float32]
    """Mean identity embedding of the person's best frames (the run's recognizer)."""
    crop: Image
    """The best frame's face with its surroundings, BGR: usable as a reference image."""
    strip: tuple[tuple[float, Image], ...]
    """(seconds, thumbnail) over the person's time on screen."""

    def to_dict(self, thumbnail: Path | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "tracks": [[a.first_frame, a.last_frame] for a in self.appearances],
            "frames": self.frames,
            "screen_time_s": round(self.screen_time_s, 3),
            "first_s": round(self.first_s, 3),
            "last_s": round(self.last_s, 3),
            "best": {"frame": self.best_frame, "box": [round(v, 1) for v in self.best_box]},
            "thumbnail": None if thumbnail is None else str(thumbnail),
        }


@dataclass(frozen=True)
class People:
    """Everyone found in one target."""

    target: Path | None
    kind: Literal["image", "video"]
    frames: int
    """Frames analysed (1 for an image)."""
    fps: float | None
    threshold: float
    """Identity distance within which faces were grouped as one person."""
    recognizer: str
    persons: tuple[Person, ...]

    def __getitem__(self, person_id: str) -> Person:
        for person in self.persons:
            if person.id == person_id:
                return person
        raise KeyError(person_id)

    def to_dict(self, thumbnails: Mapping[str, Path] | None = None) -> dict[str, Any]:
        """The JSON form (``masquerade faces --json``); ``thumbnails`` maps ids to written crops."""
        thumbnails = thumbnails or {}
        return {
            "target": None if self.target is None else str(self.target),
            "kind": self.kind,
            "frames": self.frames,
            "fps": self.fps,
            "recognizer": self.recognizer,
            "threshold": self.threshold,
            "persons": [p.to_dict(thumbnails.get(p.id)) for p in self.persons],
        }

    def contact_sheet(self) -> Image:
        """One row per person: the best crop, the figures, and thumbnails over time (BGR)."""
        return contact_sheet(self)

    def write(self, folder: Path) -> dict[str, Path]:
        """Write ``p1.jpg``, ``p2.jpg``, ... (the reference crops) and ``contact_sheet.png`` into
        ``folder`` (created if missing); return the crops' paths by person id."""
        from masquerade.media.atomic import atomic_output
        from masquerade.media.image import write_image

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = {}
        for person in self.persons:
            path = folder / f"{person.id}.jpg"
            with atomic_output(path) as temp:
                write_image(temp, person.crop, quality=95)
            written[person.id] = path
        with atomic_output(folder / CONTACT_SHEET) as temp:
            write_image(temp, self.contact_sheet())
        return written


def clock(seconds: float) -> str:
    """``m:ss.s``"""
    minutes, rest = divmod(max(seconds, 0.0), 60.0)
    return f"{int(minutes)}:{rest:04.1f}"


def describe(person: Person, kind: str) -> str:
    """One line about a person, as ``masquerade faces`` prints it."""
    tracks = len(person.appearances)
    if kind == "image":
        return f"{person.id}: face at {', '.join(f'{v:.0f}' for v in person.best_box)}"
    span = f"{clock(person.first_s)}-{clock(person.last_s)}"
    plural = "s" if tracks != 1 else ""
    return (f"{person.id}: {tracks} track{plural}, {person.screen_time_s:.1f} s on screen, {span}, "
            f"best frame {person.best_frame}")


def _text(canvas: Image, text: str, x: int, y: int, scale: float = 0.5, colour=(235, 235, 235)) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)


def contact_sheet(people: People) -> Image:
    pad, info = 10, 230
    row_height = SHEET_BEST + 2 * pad
    width = pad + SHEET_BEST + pad + info + SHEET_STRIP * (SHEET_THUMB + 4) + pad
    header = 36
    height = header + max(len(people.persons), 1) * row_height
    sheet = np.full((height, width, 3), 32, np.uint8)
    name = people.target.name if people.target is not None else "target"
    count = len(people.persons)
    _text(sheet, f"{name}: {count} {'person' if count == 1 else 'people'} "
                 f"({people.recognizer}, threshold {people.threshold:.2f})", pad, 24, 0.6)
    if not people.persons:
        _text(sheet, "no faces found", pad, header + 40)
    for row, person in enumerate(people.persons):
        top = header + row * row_height
        if row:
            sheet[top, :] = 70
        best = cv2.resize(person.crop, (SHEET_BEST, SHEET_BEST), interpolation=cv2.INTER_AREA)
        sheet[top + pad:top + pad + SHEET_BEST, pad:pad + SHEET_BEST] = best
        x = pad + SHEET_BEST + pad
        _text(sheet, person.id, x, top + pad + 28, 1.0, (120, 220, 255))
        tracks = len(person.appearances)
        lines = [f"{tracks} track{'s' if tracks != 1 else ''}, best frame {person.best_frame}"]
        if people.kind == "video":
            lines[:0] = [f"{person.screen_time_s:.1f} s on screen",
                         f"{clock(person.first_s)} - {clock(person.last_s)}"]
        for k, line in enumerate(lines):
            _text(sheet, line, x, top + pad + 60 + 22 * k)
        x += info
        for k, (seconds, thumb) in enumerate(_spread(person.strip, SHEET_STRIP)):
            left = x + k * (SHEET_THUMB + 4)
            small = cv2.resize(thumb, (SHEET_THUMB, SHEET_THUMB), interpolation=cv2.INTER_AREA)
            sheet[top + pad + 20:top + pad + 20 + SHEET_THUMB, left:left + SHEET_THUMB] = small
            if people.kind == "video":
                _text(sheet, clock(seconds), left + 4, top + pad + 20 + SHEET_THUMB + 18, 0.45)
    return sheet


def _spread(items: tuple[tuple[float, Image], ...], count: int) -> list[tuple[float, Image]]:
    """At most ``count`` items, evenly spaced (first and last kept)."""
    if len(items) <= count:
        return list(items)
    picks = np.linspace(0, len(items) - 1, count).round().astype(int)
    return [items[i] for i in picks]


__all__ = ["CONTACT_SHEET", "Appearance", "People", "Person", "clock", "contact_sheet", "describe"]
