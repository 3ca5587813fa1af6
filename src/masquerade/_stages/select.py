"""Which faces of a frame to swap: ``--faces {reference,all,one,index}``.

- ``all``: every face.
- ``one``: the largest face. In video the chosen track is kept while it stays nearly as large as the
  largest (``ONE_KEEP_RATIO``), so two faces of similar size do not swap turns every frame.
- ``index``: the N-th face counted from the left (0-based); none when there are fewer faces.
- ``reference``: faces of the person in the reference embedding (from ``--reference IMAGE``, else the
  largest face of the first frame that has one). In video each track's decision is cached: a track is
  embedded when it first appears and again at most every ``recheck_interval`` frames; the decision
  uses the mean of its recent distances with a hysteresis band around the threshold, so it does not
  flicker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from masquerade._stages.protocols import Detector, Recognizer
from masquerade.config import SelectOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.types import Face, Image

RECHECK_INTERVAL = 25
"""Frames between two embeddings of one track (about a second of video)."""
HYSTERESIS = 0.04
"""A matched track is dropped above threshold + this; an unmatched one taken below threshold - this."""
HISTORY = 5
"""Distances averaged per track."""
ONE_KEEP_RATIO = 0.8
"""``one`` mode keeps its track while that face is at least this fraction of the largest's size."""


@dataclass
class _Decision:
    matched: bool
    last_check: int
    last_seen: int
    distances: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))


def largest(faces: Sequence[Face]) -> Face | None:
    return max(faces, key=lambda f: f.size, default=None)


def reference_embedding(image: Image, detector: Detector, recognizer: Recognizer) -> NDArray[np.float32]:
    """Embedding of the largest face in a reference image; NoSourceFaceError when it has none."""
    face = largest(detector.detect(image))
    if face is None:
        raise NoSourceFaceError("no face found in the reference image")
    return np.asarray(recognizer.embed(image, face), dtype=np.float32)


class FaceSelector:
    """Stateful per run (caches each track's decision); ``reset`` between runs."""

    def __init__(self, options: SelectOptions, recognizer: Recognizer | None,
                 reference_embedding: NDArray[np.floating] | None = None, *,
                 recheck_interval: int = RECHECK_INTERVAL, hysteresis: float = HYSTERESIS,
                 adopt: bool = True) -> None:
        """``adopt``: in ``reference`` mode without a reference embedding, take the first face seen as
        the person (a run from the start); False: the run's person was looked for elsewhere and not
        found (a segment of a video without faces), so no face is selected."""
        if options.mode == "reference" and recognizer is None:
            raise UsageError("face selection by reference needs a recognizer")
        if options.mode == "index" and options.face_index < 0:
            raise UsageError(f"--face-index must be >= 0, got {options.face_index}")
        if recheck_interval < 1 or hysteresis < 0:
            raise ValueError("recheck_interval must be >= 1 and hysteresis >= 0")
        self.options = options
        self.recognizer = recognizer
        self.threshold = (options.similarity if options.similarity is not None
                          else recognizer.default_threshold if recognizer is not None else 0.0)
        self._given = None if reference_embedding is None else np.asarray(reference_embedding, np.float32)
        self.recheck_interval = recheck_interval
        self.hysteresis = hysteresis
        self.adopt = adopt
        self.embeddings = 0
        """Faces embedded so far (for tests and timing reports)."""
        self.reset()

    @property
    def reference(self) -> NDArray[np.float32] | None:
        """The reference embedding in use (given, or adopted from the first face seen)."""
        return self._reference

    def reset(self) -> None:
        self._reference = self._given
        self._decisions: dict[int, _Decision] = {}
        self._one_track: int | None = None
        self._calls = 0

    def __call__(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        """The faces to swap, in the order given."""
        self._calls += 1
        faces = list(faces)
        if not faces:
            return []
        mode = self.options.mode
        if mode == "all":
            return faces
        if mode == "one":
            return [self._one(faces)]
        if mode == "index":
            ordered = sorted(faces, key=lambda f: float(f.center[0]))
            i = self.options.face_index
            return [ordered[i]] if i < len(ordered) else []
        return self._by_reference(image, faces)

    # -- modes ---------------------------------------------------------------------------------------

    def _one(self, faces: list[Face]) -> Face:
        best = largest(faces)
        assert best is not None
        kept = next((f for f in faces if f.track_id is not None and f.track_id == self._one_track), None)
        if kept is not None and kept.size >= ONE_KEEP_RATIO * best.size:
            return kept
        self._one_track = best.track_id
        return best

    def _by_reference(self, image: Image, faces: list[Face]) -> list[Face]:
        if self._reference is None:
            if not self.adopt:
                return []
            # No reference image: the person is the largest face of the first frame that has one.
            first = largest(faces)
            assert first is not None
            self._reference = self._embedding(image, first)
            # Its own decision below reuses this embedding instead of computing it again.
            faces = [f.with_(embedding=self._reference) if f is first else f for f in faces]
        chosen = []
        for face in faces:
            if face.track_id is None:
                # A still image: decide on this picture alone.
                if self._distance(image, face) <= self.threshold:
                    chosen.append(face)
            elif self._track_matches(image, face):
                chosen.append(face)
        self._forget_old_tracks()
        return chosen

    def _track_matches(self, image: Image, face: Face) -> bool:
        tid = face.track_id
        assert tid is not None
        decision = self._decisions.get(tid)
        if decision is not None:
            decision.last_seen = self._calls
            if self._calls - decision.last_check < self.recheck_interval:
                return decision.matched
        d = self._distance(image, face)
        if decision is None:
            decision = _Decision(matched=d <= self.threshold, last_check=self._calls, last_seen=self._calls)
            decision.distances.append(d)
            self._decisions[tid] = decision
            return decision.matched
        decision.last_check = self._calls
        decision.distances.append(d)
        mean = float(np.mean(decision.distances))
        if decision.matched and mean > self.threshold + self.hysteresis:
            decision.matched = False
        elif not decision.matched and mean < self.threshold - self.hysteresis:
            decision.matched = True
        return decision.matched

    # -- helpers -------------------------------------------------------------------------------------

    def _embedding(self, image: Image, face: Face) -> NDArray[np.float32]:
        if face.embedding is not None:
            return face.embedding
        assert self.recognizer is not None
        self.embeddings += 1
        return np.asarray(self.recognizer.embed(image, face), dtype=np.float32)

    def _distance(self, image: Image, face: Face) -> float:
        assert self.recognizer is not None and self._reference is not None
        return self.recognizer.distance(self._embedding(image, face), self._reference)

    def _forget_old_tracks(self) -> None:
        """Trackers never reuse an id; a track unseen for long is gone and its decision can go."""
        horizon = 10 * self.recheck_interval
        for tid in [t for t, d in self._decisions.items() if self._calls - d.last_seen > horizon]:
            del self._decisions[tid]


__all__ = ["FaceSelector", "largest", "reference_embedding"]
