"""What each face track shows, for ``masquerade faces``: tracklets, then people.

A tracklet is a track between two identity events (``identity.TrackEvents``: a cut that put someone
else where the face was, or the end of a crossing that may have handed the track to the other face),
so each tracklet shows one person. ``TrackletCollector`` keeps, per tracklet, the embeddings of its
best-quality frames (sampled a few times a second; the best ``BEST_SAMPLES`` are averaged), the best
frame's crop (preferring frames with no other face in the crop) and a strip of thumbnails over time.
``group_people`` clusters the tracklets (average linkage at the recognizer's threshold; two tracklets
seen in the same frame are two people) and ``summarise`` turns the groups into ``People``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages.cluster import agglomerate
from masquerade._stages.identity import SETTLING_WEIGHT, TrackEvents, face_quality, square_crop
from masquerade._stages.protocols import Recognizer
from masquerade.people import Appearance, People, Person
from masquerade.types import Face, Image

# TrackletCollector
SAMPLES_PER_SECOND = 5.0
"""How often a tracklet's face is considered for an embedding."""
BEST_SAMPLES = 6
"""Embeddings kept (the best-quality ones) and averaged per tracklet."""
MIN_TRACKLET_S = 0.2
"""A video tracklet shorter than this joins a person but founds none (``group_people``)."""
CROP_SIDE = 384
"""Longest side of a person's reference crop (pixels)."""
CROP_SCALE = 2.2
"""Side of the reference crop over the face box's longer side (hair, chin and some background)."""
THUMB_SIDE = 96
STRIP_LENGTH = 8
"""Thumbnails kept per tracklet (8 to 16) for the contact sheet's strip over time."""


@dataclass
class Tracklet:
    """One track between two crossings (a crossing may hand a track to the other face)."""

    key: int
    """Order of appearance (0, 1, ...)."""
    track_id: int | None
    spans: list[list[int]] = field(default_factory=list)
    """[first, last] frame index runs in which the face was seen (inclusive)."""
    frames: int = 0
    first_time: float = 0.0
    last_time: float = 0.0
    samples: list[tuple[float, int, NDArray[np.float32]]] = field(default_factory=list)
    """(quality, frame, embedding) of the best frames, at most ``BEST_SAMPLES``."""
    best_rank: tuple[bool, float] = (False, -1.0)
    """(alone in its crop, quality) of the best frame: a crop without a neighbour's face comes first."""
    best_frame: int = 0
    best_time: float = 0.0
    best_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    crop: bytes = b""
    """The best frame's face with some surroundings (usable as a reference photo), JPEG-encoded: a long
    video has many tracklets, and pictures are kept compressed until the people are known."""
    strip: list[tuple[int, float, bytes]] = field(default_factory=list)
    """(frame, time, JPEG thumbnail) spread over the tracklet's life."""
    strip_step: int = 1
    thumbs_seen: int = 0
    last_sample: int = -(10**9)

    @property
    def embedding(self) -> NDArray[np.float32]:
        """Mean of the best frames' embeddings weighted by their quality, normalised."""
        weights = np.array([max(q, 1e-3) for q, _, _ in self.samples])
        mean = np.average([e for _, _, e in self.samples], axis=0, weights=weights)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def overlaps(self, other: Tracklet) -> bool:
        """Seen in a common frame (then they are two people)."""
        return any(a0 <= b1 and b0 <= a1 for a0, a1 in self.spans for b0, b1 in other.spans)


class TrackletCollector:
    """Feeds on tracked frames in order; ``tracklets()`` then returns what each tracklet showed."""

    def __init__(self, recognizer: Recognizer, fps: float) -> None:
        self.recognizer = recognizer
        self.sample_interval = max(1, round(fps / SAMPLES_PER_SECOND))
        self.embeddings = 0
        self._events = TrackEvents()
        self._open: dict[int, Tracklet] = {}
        self._all: list[Tracklet] = []

    def add(self, image: Image, index: int, time: float, faces: Sequence[Face]) -> None:
        """Record one frame's faces (with track ids; faces without are each their own tracklet)."""
        crowded = _crowded(faces)
        for face, event, near in zip(faces, self._events(image, faces), crowded, strict=True):
            tracklet = self._open.get(face.track_id) if face.track_id is not None else None
            if tracklet is None or event.cut or event.parted:
                tracklet = Tracklet(key=len(self._all), track_id=face.track_id, first_time=time)
                self._all.append(tracklet)
                if face.track_id is not None:
                    self._open[face.track_id] = tracklet
            if tracklet.spans and tracklet.spans[-1][1] == index - 1:
                tracklet.spans[-1][1] = index
            else:
                tracklet.spans.append([index, index])
            tracklet.frames += 1
            tracklet.last_time = time
            # Hidden or hiding faces, and faces the tracker is still catching up with after a cut, say
            # little about who they are; a tracklet with no sample yet takes one anyway (at a low
            # weight), so every tracklet has an embedding.
            due = index - tracklet.last_sample >= self.sample_interval
            if (due and not event.touching and not event.settling) or not tracklet.samples:
                tracklet.last_sample = index
                doubtful = event.touching or event.settling
                self._sample(tracklet, image, index, time, face, near, SETTLING_WEIGHT if doubtful else 1.0)

    def tracklets(self) -> list[Tracklet]:
        return list(self._all)

    def _sample(self, tracklet: Tracklet, image: Image, index: int, time: float, face: Face,
                crowded: bool, weight: float) -> None:
        quality = face_quality(face, image.shape) * weight
        if len(tracklet.samples) >= BEST_SAMPLES and quality <= tracklet.samples[-1][0]:
            self._add_thumb(tracklet, image, index, time, face)
            return
        self.embeddings += 1
        embedding = np.asarray(self.recognizer.embed(image, face), np.float32)
        tracklet.samples.append((quality, index, embedding))
        tracklet.samples.sort(key=lambda s: (-s[0], s[1]))
        del tracklet.samples[BEST_SAMPLES:]
        rank = (not crowded, quality)
        if rank > tracklet.best_rank:
            tracklet.best_rank, tracklet.best_frame, tracklet.best_time = rank, index, time
            tracklet.best_box = tuple(float(v) for v in face.bbox)  # type: ignore[assignment]
            tracklet.crop = _jpeg(square_crop(image, face.bbox, CROP_SCALE, CROP_SIDE))
        self._add_thumb(tracklet, image, index, time, face)

    @staticmethod
    def _add_thumb(tracklet: Tracklet, image: Image, index: int, time: float, face: Face) -> None:
        """Keep thumbnails spread over time: when the strip is full, drop every other one and keep
        half as many from then on, so a long tracklet has a strip over its whole life in bounded memory."""
        tracklet.thumbs_seen += 1
        if (tracklet.thumbs_seen - 1) % tracklet.strip_step:
            return
        tracklet.strip.append((index, time, _jpeg(square_crop(image, face.bbox, 1.5, THUMB_SIDE))))
        if len(tracklet.strip) > 2 * STRIP_LENGTH:
            tracklet.strip = tracklet.strip[::2]
            tracklet.strip_step *= 2


def _crowded(faces: Sequence[Face]) -> list[bool]:
    """Per face, whether another face's box reaches into its reference crop."""
    out = []
    for i, face in enumerate(faces):
        x1, y1, x2, y2 = face.bbox.tolist()
        half = max(x2 - x1, y2 - y1) * CROP_SCALE / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        out.append(any(o[0] < cx + half and o[2] > cx - half and o[1] < cy + half and o[3] > cy - half
                       for j, o in enumerate(f.bbox.tolist() for f in faces) if j != i))
    return out


def _jpeg(image: Image) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def _unjpeg(data: bytes) -> Image:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def group_people(tracklets: Sequence[Tracklet], recognizer: Recognizer, threshold: float,
                 min_frames: int = 1) -> list[list[Tracklet]]:
    """Tracklets clustered into people (average linkage at ``threshold``; tracklets seen in the same
    frame are never one person), each group in order of appearance.

    Tracklets shorter than ``min_frames`` (a face glimpsed for an instant, or a tracker catching up
    after a cut) are too unsure to found a person: each joins the nearest person within the
    threshold, or is left out."""
    strong = [t for t in tracklets if t.frames >= min_frames] or list(tracklets)
    weak = [t for t in tracklets if t not in strong]
    embeddings = [t.embedding for t in strong]
    n = len(strong)
    distances = np.zeros((n, n))
    blocked = np.zeros((n, n), bool)
    for i in range(n):
        for j in range(i + 1, n):
            distances[i, j] = distances[j, i] = recognizer.distance(embeddings[i], embeddings[j])
            blocked[i, j] = blocked[j, i] = strong[i].overlaps(strong[j])
    labels = agglomerate(distances, threshold, blocked)
    groups: list[list[Tracklet]] = [[] for _ in range(max(labels, default=-1) + 1)]
    for tracklet, label in zip(strong, labels, strict=True):
        groups[label].append(tracklet)
    for tracklet in weak:
        options = [(float(np.mean([recognizer.distance(tracklet.embedding, e) for e in
                                   (m.embedding for m in group)])), k)
                   for k, group in enumerate(groups) if not any(tracklet.overlaps(m) for m in group)]
        distance, k = min(options, default=(np.inf, -1))
        if distance <= threshold:
            groups[k].append(tracklet)
    for group in groups:
        group.sort(key=lambda t: t.key)
    return groups


def summarise(groups: Sequence[Sequence[Tracklet]], *, target: Path | None, kind: Literal["image", "video"],
              frames: int, fps: float | None, threshold: float, recognizer: str) -> People:
    """The people of a target from its grouped tracklets: ids ``p1``, ``p2``, ... by screen time (then
    first appearance, then left to right), so the same footage always gets the same ids."""
    drafts = []
    for group in groups:
        tracklets = sorted(group, key=lambda t: (t.spans[0][0], t.key))
        best = max(tracklets, key=lambda t: (t.best_rank, -t.best_frame))
        seen = sum(t.frames for t in tracklets)
        embedding = np.mean([t.embedding for t in tracklets], axis=0)
        thumbs = sorted(((time, thumb) for t in tracklets for _, time, thumb in t.strip), key=lambda s: s[0])
        count = min(len(thumbs), 2 * STRIP_LENGTH)
        keep = np.unique(np.linspace(0, len(thumbs) - 1, count).round().astype(int))
        strip = [(thumbs[i][0], _unjpeg(thumbs[i][1])) for i in keep]
        drafts.append((seen, tracklets[0].spans[0][0], best.best_box[0], dict(
            appearances=_appearances(tracklets), frames=seen,
            screen_time_s=seen / fps if kind == "video" and fps else 0.0,
            first_s=tracklets[0].first_time, last_s=max(t.last_time for t in tracklets),
            best_frame=best.best_frame, best_box=best.best_box,
            embedding=(embedding / max(float(np.linalg.norm(embedding)), 1e-12)).astype(np.float32),
            crop=_unjpeg(best.crop), strip=tuple(strip))))
    drafts.sort(key=lambda d: (-d[0], d[1], d[2]))
    persons = tuple(Person(id=f"p{i + 1}", **d[3]) for i, d in enumerate(drafts))
    return People(target=target, kind=kind, frames=frames, fps=fps, threshold=threshold,
                  recognizer=recognizer, persons=persons)


def _appearances(tracklets: Sequence[Tracklet]) -> tuple[Appearance, ...]:
    """One appearance per tracklet, joining a tracklet to the one before when it goes straight on
    (a crossing that split one person's track)."""
    out: list[Appearance] = []
    for t in tracklets:
        first, last = t.spans[0][0], t.spans[-1][1]
        if out and out[-1].last_frame + 1 == first:
            prev = out[-1]
            out[-1] = Appearance(prev.first_frame, last, prev.frames + t.frames, prev.start_s, t.last_time)
        else:
            out.append(Appearance(first, last, t.frames, t.first_time, t.last_time))
    return tuple(out)


__all__ = ["Tracklet", "TrackletCollector", "group_people", "summarise"]
