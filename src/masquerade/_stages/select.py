"""Which faces of a frame to swap: ``--faces {reference,all,one,index}``.

- ``all``: every face.
- ``one``: the largest face. In video the chosen track is kept while it stays nearly as large as the
  largest (``ONE_KEEP_RATIO``), so two faces of similar size do not swap turns every frame.
- ``index``: the N-th face counted from the left (0-based); none when there are fewer faces.
- ``reference``: faces of the person in the reference embedding (from ``--reference IMAGE`` or
  ``--reference-frame``, else the largest face of the first frame that has one). In video the decision
  is per track, as for ``--map`` (``identity.IdentityMapper`` with this one reference): votes with
  hysteresis, held through crossings, made afresh after a cut.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from masquerade._stages.identity import RECHECK_INTERVAL, STEADY_INTERVAL, IdentityMapper
from masquerade._stages.protocols import Detector, Recognizer
from masquerade.config import SelectOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.types import Face, Image

ONE_KEEP_RATIO = 0.8
"""``one`` mode keeps its track while that face is at least this fraction of the largest's size."""


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
                 recheck_interval: int = RECHECK_INTERVAL, steady_interval: int = STEADY_INTERVAL,
                 adopt: bool = True) -> None:
        """``adopt``: in ``reference`` mode without a reference embedding, take the first face seen as
        the person (a run from the start); False: the run's person was looked for elsewhere and not
        found (a segment of a video without faces), so no face is selected."""
        if options.mode == "reference" and recognizer is None:
            raise UsageError("face selection by reference needs a recognizer")
        if options.mode == "index" and options.face_index < 0:
            raise UsageError(f"--face-index must be >= 0, got {options.face_index}")
        if recheck_interval < 1:
            raise ValueError("recheck_interval must be >= 1")
        self.options = options
        self.recognizer = recognizer
        self.threshold = (options.similarity if options.similarity is not None
                          else recognizer.default_threshold if recognizer is not None else 0.0)
        self._given = None if reference_embedding is None else np.asarray(reference_embedding, np.float32)
        self.recheck_interval = recheck_interval
        self.steady_interval = steady_interval
        self.adopt = adopt
        self.reset()

    @property
    def reference(self) -> NDArray[np.float32] | None:
        """The reference embedding in use (given, or adopted from the first face seen)."""
        return self._reference

    @property
    def embeddings(self) -> int:
        """Faces embedded so far (for tests and timing reports)."""
        return self._adopted + (self._mapper.embeddings if self._mapper is not None else 0)

    def reset(self) -> None:
        self._reference = self._given
        self._mapper: IdentityMapper | None = None
        self._adopted = 0
        self._one_track: int | None = None

    def __call__(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        """The faces to swap, in the order given."""
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
        assert self.recognizer is not None
        if self._reference is None:
            if not self.adopt:
                return []
            # No reference image: the person is the largest face of the first frame that has one.
            first = largest(faces)
            assert first is not None
            self._adopted += 1
            self._reference = np.asarray(self.recognizer.embed(image, first), np.float32)
            # Its own decision reuses this embedding instead of computing it again.
            faces = [f.with_(embedding=self._reference) if f is first else f for f in faces]
        if self._mapper is None:
            self._mapper = IdentityMapper(self.recognizer, [self._reference], self.threshold,
                                          recheck_interval=self.recheck_interval,
                                          steady_interval=self.steady_interval)
        tagged = self._mapper(image, faces)
        return [face for face, mark in zip(faces, tagged, strict=True) if mark.person == 0]


__all__ = ["FaceSelector", "largest", "reference_embedding"]
