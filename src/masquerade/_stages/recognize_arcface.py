"""ArcFace recognizer (InsightFace ``w600k_r50``) through ONNX Runtime.

Pre-processing (as InsightFace's ``arcface_onnx.py`` + ``face_align.norm_crop``): similarity-align the
five key points onto the 112 px ArcFace template, RGB, ``(x - 127.5) / 127.5``. The raw 512-d output
is L2-normalised; distance is ``1 - cosine``.

The swappers trained on this embedding (inswapper, hyperswap) take their source embedding from this
class whatever recognizer the user picked for face selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.errors import ModelError
from masquerade.geometry.align import crop_faces
from masquerade.models.manifest import ModelSpec
from masquerade.types import Face, Image

DEFAULT_THRESHOLD = 0.6
"""Cosine distance below which two faces count as the same person (cosine similarity above 0.4).
Not yet measured on a labelled set here; 0.4 similarity is a conservative point for w600k_r50,
whose same-person pairs typically score above 0.5 and different people below 0.2."""


def normalize(vectors: NDArray[np.floating]) -> NDArray[np.float32]:
    """Row-wise L2 normalisation (a zero row stays zero)."""
    v = np.asarray(vectors, dtype=np.float32)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(norm, 1e-12)).astype(np.float32)


class ArcFaceRecognizer:
    """512-d identity embeddings from aligned 112 px crops."""

    name = "arcface"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, session: Any, spec: ModelSpec) -> None:
        if spec.template is None or spec.size_px is None:
            raise ModelError(f"{spec.name} declares no alignment template; it cannot be a recognizer")
        self.session = session
        self.spec = spec
        self._input = session.get_inputs()[0].name
        batch = session.get_inputs()[0].shape[0]
        self._batch = batch if isinstance(batch, int) and batch > 0 else None

    def crops(self, image: Image, faces: Sequence[Face]) -> NDArray[np.uint8]:
        """(N, 112, 112, 3) BGR aligned crops (bilinear, as the model was trained)."""
        size = int(self.spec.size_px or 112)
        crops, _ = crop_faces(
            image, [f.kps5 for f in faces], self.spec.template or (), size, interpolation=cv2.INTER_LINEAR
        )
        return crops

    def preprocess(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(N, 3, 112, 112) float32 RGB blob."""
        rgb = crops[..., ::-1].astype(np.float32)
        return np.ascontiguousarray(((rgb - self.spec.mean) / self.spec.std).transpose(0, 3, 1, 2))

    def infer(self, blob: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw embeddings (N, 512); runs one batch unless the graph pins its batch size."""
        if len(blob) == 0:
            return np.zeros((0, 512), np.float32)
        if self._batch is None:
            return np.asarray(self.session.run(None, {self._input: blob})[0], np.float32).reshape(
                len(blob), -1
            )
        parts = [
            self.session.run(None, {self._input: blob[i : i + self._batch]})[0]
            for i in range(0, len(blob), self._batch)
        ]
        return np.concatenate(parts).astype(np.float32).reshape(len(blob), -1)

    def embed_many(self, image: Image, faces: Sequence[Face]) -> NDArray[np.float32]:
        """(N, 512) L2-normalised embeddings of ``faces`` in ``image``."""
        return normalize(self.infer(self.preprocess(self.crops(image, faces))))

    def embed(self, image: Image, face: Face) -> NDArray[np.float32]:
        return self.embed_many(image, [face])[0]

    def embed_faces(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        """The same faces with ``embedding`` set (one batched run)."""
        if not faces:
            return []
        embeddings = self.embed_many(image, faces)
        return [replace(face, embedding=e) for face, e in zip(faces, embeddings, strict=True)]

    def distance(self, a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
        """``1 - cosine similarity`` (0 same direction, 2 opposite)."""
        u, v = normalize(np.ravel(a)), normalize(np.ravel(b))
        return float(1.0 - np.dot(u, v))
