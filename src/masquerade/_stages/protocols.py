"""What the pipeline expects of each kind of stage. Embedded and neural stages both fit these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
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


@dataclass
class Stages:
    """The model-backed stages of a run, built by :func:`masquerade._stages.build.build_stages`.

    The content guard and the watermark are not among them: the pipeline always adds its own."""

    analyser: Analyser
    swapper: Swapper | None
    """None in an enhance-only run."""
    recognizer: Recognizer | None = None
    enhancer: Enhancer | None = None
    notices: list[str] = field(default_factory=list)
    """Messages the user must see before the run (licence notices)."""
