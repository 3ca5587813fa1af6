"""What the pipeline expects of each kind of stage. Embedded and neural stages both fit these."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from masquerade.types import Face, Image


class Detector(Protocol):
    def detect(self, image: Image) -> list[Face]: ...


class Analyser(Detector, Protocol):
    """A detector that can also follow known faces cheaply (the tracker's refine step)."""

    def refine(self, image: Image, faces: Sequence[Face]) -> list[Face]: ...


class Recognizer(Protocol):
    name: str
    default_threshold: float

    def embed(self, image: Image, face: Face) -> np.ndarray: ...

    def embed_faces(self, image: Image, faces: Sequence[Face]) -> list[Face]: ...

    def distance(self, a: np.ndarray, b: np.ndarray) -> float: ...


class Swapper(Protocol):
    def prepare(self, sources: Sequence[tuple[Image, Face]]) -> Any: ...

    def swap(self, image: Image, face: Face, source: Any) -> Image: ...

    def swap_many(self, image: Image, faces: Sequence[Face], source: Any) -> Image:
        """All ``faces`` of one frame at once (neural swappers run them as one batch)."""
        ...

    def swap_batch(
        self, images: Sequence[Image], faces: Sequence[Sequence[Face]], source: Any
    ) -> list[Image]:
        """Several frames at once: ``images[i]`` with every face in ``faces[i]`` swapped (neural
        swappers run the faces of all the frames as one batch)."""
        ...


class Enhancer(Protocol):
    def enhance(self, image: Image, face: Face) -> Image: ...

    def enhance_many(self, image: Image, faces: Sequence[Face]) -> Image: ...
