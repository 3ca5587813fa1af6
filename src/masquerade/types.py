"""The vocabulary every stage speaks: images, faces and frames.

Conventions (shared by all stages):
- Images are ``uint8`` arrays in OpenCV's BGR order, shape (H, W, 3), C-contiguous.
- Coordinates are float32 pixels in the image, x to the right, y down.
- ``kps5`` follows InsightFace's order: the eye on the image's left, the eye on the image's right,
  nose tip, mouth corner on the image's left, mouth corner on the image's right. Faces from the
  embedded mesh analyser and from neural detectors are therefore interchangeable.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import TypeAlias

import numpy as np
from numpy.typing import NDArray

Image: TypeAlias = NDArray[np.uint8]
"""BGR image, (H, W, 3) uint8."""

Mask: TypeAlias = NDArray[np.float32]
"""Soft mask in [0, 1], (H, W) float32."""

Affine: TypeAlias = NDArray[np.float64]
"""2x3 affine matrix mapping one image's coordinates into another's."""

Points: TypeAlias = NDArray[np.float32]
"""(N, 2) float32 points in image pixels."""


@dataclass(frozen=True, eq=False)
class Face:
    """One face in one image. Stages return new Faces with ``dataclasses.replace``."""

    bbox: NDArray[np.float32]
    """(4,) x1, y1, x2, y2."""
    kps5: Points
    """(5, 2) standard key points (see module doc for the order)."""
    score: float = 1.0
    """Detection confidence, or the mesh's face-presence score when the mesh ran."""
    landmarks: NDArray[np.float32] | None = None
    """(468, 3) dense face-mesh landmarks: x, y in image pixels, z (relative depth, same scale as x)."""
    embedding: NDArray[np.float32] | None = None
    """Identity embedding from the recognizer that set it (L2-normalised)."""
    track_id: int | None = None
    """Stable id of this face across video frames (None for still images)."""
    person: int | None = None
    """Which ``--map`` person this face was matched to (an index into the run's mapped people);
    None: no mapped person, so the run's default source applies if ``--faces`` selects it."""

    def __post_init__(self) -> None:
        bbox = np.asarray(self.bbox, dtype=np.float32).reshape(4)
        kps5 = np.asarray(self.kps5, dtype=np.float32).reshape(5, 2)
        object.__setattr__(self, "bbox", bbox)
        object.__setattr__(self, "kps5", kps5)
        if self.landmarks is not None:
            lm = np.asarray(self.landmarks, dtype=np.float32)
            if lm.ndim != 2 or lm.shape[1] not in (2, 3):
                raise ValueError(f"landmarks must be (N, 2) or (N, 3), got {lm.shape}")
            object.__setattr__(self, "landmarks", lm)
        if self.embedding is not None:
            object.__setattr__(self, "embedding", np.asarray(self.embedding, dtype=np.float32).reshape(-1))

    @property
    def width(self) -> float:
        return float(self.bbox[2] - self.bbox[0])

    @property
    def height(self) -> float:
        return float(self.bbox[3] - self.bbox[1])

    @property
    def size(self) -> float:
        """Side of the face box's square of equal area, in pixels."""
        return float(np.sqrt(max(self.width, 0.0) * max(self.height, 0.0)))

    @property
    def center(self) -> NDArray[np.float32]:
        return np.array(
            [(self.bbox[0] + self.bbox[2]) / 2, (self.bbox[1] + self.bbox[3]) / 2], dtype=np.float32
        )

    def with_(self, **changes: object) -> Face:
        """A copy with some fields changed (shorthand for ``dataclasses.replace``)."""
        return replace(self, **changes)  # type: ignore[arg-type]


@dataclass
class FrameContext:
    """One frame on its way through the pipeline."""

    index: int
    """0-based index of the frame in the decoded stream (after trimming)."""
    image: Image
    pts: int | None = None
    time_base: Fraction | None = None
    faces: list[Face] = field(default_factory=list)
    """Faces found in the frame (after tracking)."""
    selected: list[Face] = field(default_factory=list)
    """The faces chosen for swapping (a subset of ``faces``)."""
    swapped: int = 0
    """How many faces were swapped in this frame."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage on this frame."""

    @property
    def time(self) -> float | None:
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)
