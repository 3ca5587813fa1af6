"""Who is who across a video: per-track identity for ``--map`` and ``--reference``.

Decisions are per track, never per frame, because one frame's embedding can mislead (a blink, motion
blur, a face half out of the picture) while a track's frames together do not.

``IdentityMapper`` decides which mapped person each track is. A track is embedded when it appears
and a few times more in its first frames, then about twice a second; each embedding votes for the
nearest reference within the threshold (or for nobody), weighted by how well that frame shows the
face (``face_quality``). The first vote decides; the track then keeps its identity until another
holds two thirds of its recent vote weight (hysteresis: one odd frame never flips it). A steady track
(clear votes that agree, a face that looks as it did at its last check and is seen no better) is
embedded only about every two seconds: embedding is most of a reference run's cost.

``TrackEvents`` says what happened to each track between frames. While two faces overlap (a
crossing), nobody votes and each keeps its identity; when they part, the votes start afresh, so a
tracker that handed a track to the other face is corrected on the first clear frame. A sudden change
of a track's look (a cut to someone else at the same place) makes it a new track. The same events cut
tracks into tracklets for ``masquerade faces`` (``tracklets.py``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages.protocols import Recognizer
from masquerade.geometry import mesh
from masquerade.types import Face, Image

CONTACT_OVERLAP = 0.15
"""Two faces are in contact (one may hide the other) when their boxes share this much of the smaller."""
QUALITY_SIZE_PX = 100.0
"""Faces this wide or wider show their identity fully; smaller ones count for less."""

# IdentityMapper
FIRST_CHECKS = (0, 1, 2, 4, 8)
"""Frames after a track appears on which it is embedded (a quick, steady first decision)."""
CHECKS_AFTER_CONTACT = (0, 1, 2, 4, 8)
"""Frames after a crossing ends on which the parted faces are embedded again."""
RECHECK_INTERVAL = 12
"""Frames between two embeddings of a settled track (about twice a second at 25 fps)."""
VOTES = 9
"""Votes remembered per track."""
STEADY_INTERVAL = 48
"""Frames between two embeddings of a steady track (about 2 s at 25 fps) instead of ``RECHECK_INTERVAL``:
its last ``STEADY_VOTES`` votes agreed with its identity, each clear of the threshold, and since its last
check its face neither changed its look (``LOOK_KEPT``) nor came into clearly better view
(``BETTER_VIEW``). One dlib embedding costs about 80 ms of one core, four 720p frames' whole budget."""
STEADY_VOTES = 3
STEADY_MARGIN = 0.2
"""A vote is clear when every reference's distance is at least this share of the threshold away from it
(dlib: 0.08 either side of 0.42; the same person measures 0.23-0.30, others 0.57-0.62)."""
LOOK_KEPT = 0.3
"""Largest change of the face's thumbnail (``FaceEvent.look``, mean absolute difference) since the last
check for which the track stays steady: one face from frame to frame 0.05 median, 0.16 at the 95th
percentile; a cut to someone else 1.05-1.16 (``APPEARANCE_JUMP``)."""
BETTER_VIEW = 0.15
"""A face whose ``face_quality`` rose by this much since its last check (it grew, turned to the camera,
came into the picture) is embedded again at the normal interval: that view may decide better."""
SWITCH_SHARE = 2 / 3
"""A track changes identity when another identity holds this share of its remembered vote weight."""


def face_quality(face: Face, image_shape: tuple[int, ...]) -> float:
    """How well this face shows who it is, 0..1: its size (full at ``QUALITY_SIZE_PX``), how squarely it
    faces the camera, the share of its box inside the picture, and the detector's confidence."""
    size = min(face.size / QUALITY_SIZE_PX, 1.0)
    front = 1.0
    landmarks = face.landmarks
    if landmarks is not None and landmarks.shape[0] >= mesh.N_LANDMARKS and landmarks.shape[1] >= 3:
        yaw, pitch = mesh.head_pose(landmarks)
        front = max(float(np.cos(np.radians(yaw)) * np.cos(np.radians(pitch))), 0.0)
    height, width = image_shape[:2]
    x1, y1, x2, y2 = face.bbox.tolist()
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    inside = max(min(x2, width) - max(x1, 0.0), 0.0) * max(min(y2, height) - max(y1, 0.0), 0.0) / area
    return float(size * front * inside * min(max(face.score, 0.0), 1.0))


def in_contact(faces: Sequence[Face]) -> list[bool]:
    """Per face, whether its box overlaps another's by ``CONTACT_OVERLAP`` of the smaller box."""
    contact = [False] * len(faces)
    for i in range(len(faces)):
        for j in range(i + 1, len(faces)):
            a, b = faces[i].bbox, faces[j].bbox
            w = min(a[2], b[2]) - max(a[0], b[0])
            h = min(a[3], b[3]) - max(a[1], b[1])
            if w <= 0 or h <= 0:
                continue
            smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if w * h >= CONTACT_OVERLAP * max(float(smaller), 1e-6):
                contact[i] = contact[j] = True
    return contact


APPEARANCE_JUMP = 0.7
"""Mean absolute difference of two normalised 16 x 16 grey face thumbnails above which a track's face
changed from one frame to the next (a cut to another face at the same place; the tracker follows the
place). Measured on the people clips (benchmarks/people.py): consecutive frames of one face 0.05
median, 0.16 at the 95th percentile, 0.4 at most while a face leaves the frame; cuts 1.05-1.16."""
SIGNATURE_SIDE = 16
SETTLE_FRAMES = 2
"""Frames after a cut during which the tracker's smoothing may still trail the new face (its landmarks
lie between the old face and the new): further jumps then are the same cut, and embeddings of those
frames count for little (``SETTLING_WEIGHT``)."""
SETTLING_WEIGHT = 0.2
FORGET_AFTER = 250
"""Calls after which an unseen track's records are dropped (trackers never reuse an id)."""


@dataclass(frozen=True)
class FaceEvent:
    """What happened to one tracked face in this frame, as identity decisions need to know it."""

    touching: bool
    """It overlaps another face (a crossing): its pixels may show the other person."""
    cut: bool
    """Its look jumped since the track's last frame: the track went on across a cut to someone else."""
    parted: bool
    """It touched another face in the track's last frame and no longer does."""
    settling: bool = False
    """A cut happened on this track within the last ``SETTLE_FRAMES`` frames."""
    look: NDArray[np.float32] | None = field(default=None, compare=False, repr=False)
    """The face's normalised grey thumbnail (``SIGNATURE_SIDE`` px square); None without a track."""


@dataclass(frozen=True)
class _Seen:
    call: int
    signature: NDArray[np.float32]
    touching: bool
    last_jump: int | None


def _signature(image: Image, face: Face) -> NDArray[np.float32]:
    grey = cv2.cvtColor(square_crop(image, face.bbox, 1.0, 2 * SIGNATURE_SIDE), cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (SIGNATURE_SIDE,) * 2, interpolation=cv2.INTER_AREA).astype(np.float32)
    return (small - small.mean()) / (float(small.std()) + 1e-6)


class TrackEvents:
    """Per frame, each tracked face's ``FaceEvent``. Stateful per video (frames in order)."""

    def __init__(self) -> None:
        self._last: dict[int, _Seen] = {}
        self._calls = 0

    def __call__(self, image: Image, faces: Sequence[Face]) -> list[FaceEvent]:
        now = self._calls = self._calls + 1
        events = []
        for face, touching in zip(faces, in_contact(faces), strict=True):
            if face.track_id is None:
                events.append(FaceEvent(touching, cut=False, parted=False))
                continue
            signature = _signature(image, face)
            before = self._last.get(face.track_id)
            if before is None:
                self._last[face.track_id] = _Seen(now, signature, touching, None)
                events.append(FaceEvent(touching, cut=False, parted=False, look=signature))
                continue
            jump = not touching and not before.touching and \
                float(np.abs(signature - before.signature).mean()) > APPEARANCE_JUMP
            settled = before.last_jump is None or now - before.last_jump > SETTLE_FRAMES
            last_jump = now if jump else before.last_jump
            self._last[face.track_id] = _Seen(now, signature, touching, last_jump)
            events.append(FaceEvent(touching, cut=jump and settled, parted=before.touching and not touching,
                                    settling=last_jump is not None and now - last_jump <= SETTLE_FRAMES,
                                    look=signature))
        for tid in [t for t, seen in self._last.items() if now - seen.call > FORGET_AFTER]:
            del self._last[tid]
        return events


# -- swap --map: which mapped person each track is ---------------------------------------------------


@dataclass(frozen=True)
class _Vote:
    person: int | None
    weight: float
    clear: bool
    """Every reference's distance was clear of the threshold (``STEADY_MARGIN``)."""


@dataclass
class _TrackVotes:
    person: int | None
    """The track's identity: an index into the references, or None (nobody mapped)."""
    schedule: tuple[int, ...]
    start: int
    """Call at which the current schedule began (the track's first frame, a cut, or a crossing's end)."""
    last_check: int
    last_seen: int
    votes: deque[_Vote] = field(default_factory=lambda: deque(maxlen=VOTES))
    look: NDArray[np.float32] | None = None
    """The face's thumbnail at the last check."""
    view: float = 0.0
    """Its ``face_quality`` at the last check."""


class IdentityMapper:
    """Tags each face with the mapped person it is (``Face.person``). Stateful per video; ``reset``."""

    def __init__(self, recognizer: Recognizer, references: Sequence[NDArray[np.floating]], threshold: float,
                 *, recheck_interval: int = RECHECK_INTERVAL, steady_interval: int = STEADY_INTERVAL) -> None:
        """``steady_interval`` at or below ``recheck_interval``: every track is rechecked at that."""
        if not references:
            raise ValueError("the mapper needs at least one reference")
        self.recognizer = recognizer
        self.references = [np.asarray(r, np.float32) for r in references]
        self.threshold = float(threshold)
        self.recheck_interval = recheck_interval
        self.steady_interval = steady_interval
        self.embeddings = 0
        """Faces embedded so far (for tests and timing reports)."""
        self.reset()

    def reset(self) -> None:
        self._tracks: dict[int, _TrackVotes] = {}
        self._events = TrackEvents()
        self._calls = 0

    def __call__(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        """``faces`` (same order) with ``person`` set on those that are a mapped person."""
        self._calls += 1
        now = self._calls
        out = []
        for face, event in zip(faces, self._events(image, faces), strict=True):
            if face.track_id is None:  # a still image: this picture alone decides
                out.append(face.with_(person=self._vote(image, face).person))
                continue
            track = self._tracks.get(face.track_id)
            if track is None or event.cut:
                # A new face (or the track went on across a cut): its first look decides for now.
                track = _TrackVotes(None, FIRST_CHECKS, now, now, now)
                self._tracks[face.track_id] = track
                self._add_vote(track, image, face, event)
                track.person = track.votes[0].person
            else:
                track.last_seen = now
                if event.parted:
                    # What was voted before the crossing may have been the other face's: start afresh,
                    # holding the identity until new votes clearly say otherwise.
                    track.schedule, track.start = CHECKS_AFTER_CONTACT, now
                    track.votes.clear()
                if not event.touching and self._due(track, now, image, face, event):
                    self._add_vote(track, image, face, event)
            out.append(face.with_(person=track.person))
        self._forget_old_tracks(now)
        return out

    def _due(self, track: _TrackVotes, now: int, image: Image, face: Face, event: FaceEvent) -> bool:
        age = now - track.start
        if age in track.schedule:
            return True
        since = now - track.last_check
        if age <= track.schedule[-1] or since < self.recheck_interval:
            return False
        return since >= self.steady_interval or not self._steady(track, image, face, event)

    def _steady(self, track: _TrackVotes, image: Image, face: Face, event: FaceEvent) -> bool:
        """Whether nothing calls for a new vote: clear agreeing votes, the same look, no better view."""
        recent = list(track.votes)[-STEADY_VOTES:]
        if len(recent) < STEADY_VOTES or any(v.person != track.person or not v.clear for v in recent):
            return False
        if track.look is None or event.look is None:
            return False
        if float(np.abs(event.look - track.look).mean()) > LOOK_KEPT:
            return False
        return face_quality(face, image.shape) < track.view + BETTER_VIEW

    def _vote(self, image: Image, face: Face) -> _Vote:
        """The nearest reference within the threshold (or None), weighted by how well the frame shows
        the face."""
        embedding = face.embedding
        if embedding is None:
            self.embeddings += 1
            embedding = np.asarray(self.recognizer.embed(image, face), np.float32)
        distances = [self.recognizer.distance(embedding, ref) for ref in self.references]
        best = int(np.argmin(distances))
        person = best if distances[best] <= self.threshold else None
        clear = all(abs(d - self.threshold) >= STEADY_MARGIN * self.threshold for d in distances)
        return _Vote(person, max(face_quality(face, image.shape), 0.05), clear)

    def _add_vote(self, track: _TrackVotes, image: Image, face: Face, event: FaceEvent) -> None:
        track.last_check = self._calls
        vote = self._vote(image, face)
        track.look, track.view = event.look, vote.weight
        track.votes.append(replace(vote, weight=vote.weight * SETTLING_WEIGHT) if event.settling else vote)
        weights: dict[int | None, float] = {}
        for v in track.votes:
            weights[v.person] = weights.get(v.person, 0.0) + v.weight
        leader = max(weights, key=lambda p: (weights[p], p is not None, -(p or 0)))
        if leader != track.person and weights[leader] >= SWITCH_SHARE * sum(weights.values()):
            track.person = leader

    def _forget_old_tracks(self, now: int) -> None:
        """Trackers never reuse an id; a track unseen for long is gone."""
        for tid in [t for t, v in self._tracks.items() if now - v.last_seen > FORGET_AFTER]:
            del self._tracks[tid]


def square_crop(image: Image, box: NDArray[np.floating], scale: float, side: int) -> Image:
    """A square around ``box`` ``scale`` times its longer side (edges replicated), at most ``side`` px."""
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1) * scale / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    size = max(round(2 * half), 1)
    out = min(size, side)
    k = out / size
    matrix = np.array([[k, 0, -(cx - half) * k], [0, k, -(cy - half) * k]])
    return cv2.warpAffine(image, matrix, (out, out), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)


__all__ = ["FaceEvent", "IdentityMapper", "TrackEvents", "face_quality", "in_contact", "square_crop"]
