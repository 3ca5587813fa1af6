"""Identity embeddings from dlib's ResNet face recognition model (public domain, installed by pip with
``face_recognition_models``: nothing is downloaded at run time).

Alignment: dlib's network expects the 150x150 chip that dlib cuts from its 5-point shape (outer and
inner eye corners, base of the nose). For faces that carry a MediaPipe mesh those five points are
read straight off the mesh; faces with key points only (other detectors) go through dlib's 5-point
shape predictor inside their box. On the bundled photos both separate people about equally well
(smallest impostor distance / same-person distance: 2.32 with mesh points, 2.26 with the predictor in
the mesh's box); the mesh points need no extra model run and follow the mesh the swap uses.

Metric: embeddings are L2-normalised and compared by Euclidean distance (equivalently by cosine,
``d^2 = 2 - 2 cos``). dlib's own descriptors have norms of 1.37-1.47, so dlib's published 0.6
threshold is about 0.43 here. Normalising does not change the separation on the bundled photos (ratio
2.32 either way) and lets embeddings be compared with any normalised recognizer's.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.errors import ModelError, UsageError
from masquerade.types import Face, Image

MODELS_PACKAGE = "face_recognition_models"
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SHAPE_MODEL = "shape_predictor_5_face_landmarks.dat"

MESH_DLIB5 = (263, 362, 33, 133, 2)
"""Mesh indices of dlib's 5 points, in dlib's order: outer and inner corner of the eye on the image's
right, outer and inner corner of the eye on the image's left, base of the nose (subnasale). On the
bundled photos they land 1-8 px from the shape predictor's points on 270-320 px faces."""

DEFAULT_THRESHOLD = 0.42
"""Measured on the bundled photos with mesh alignment (normalised distances): same person 0.23-0.30
(obama/obama2 0.25, also after downscaling to 20 %, rotating 25 deg, mirroring, blurring, JPEG at
quality 20); different people 0.57-0.62. 0.42 sits in the middle of that gap and matches dlib's
published 0.6 (99.38 % on LFW) divided by the descriptors' norm (~1.4)."""


def models_dir() -> Path:
    """Folder of ``face_recognition_models``' files, found without importing the package (its
    ``__init__`` imports ``pkg_resources``, which new virtual environments lack)."""
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        folder = Path(location) / "models"
        if (folder / RECOGNITION_MODEL).is_file():
            return folder
    raise ModelError(
        f"dlib face recognition model not found: install the '{MODELS_PACKAGE}' package "
        f"(pip install {MODELS_PACKAGE})"
    )


class DlibRecognizer:
    """128-D identity embeddings; lower ``distance`` = more alike. Not thread-safe (one per worker)."""

    name = "dlib"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, model_dir: Path | None = None, num_jitters: int = 1) -> None:
        """``num_jitters`` > 1 averages that many randomly jittered chips (slower, slightly steadier);
        0 and 1 both mean one pass."""
        try:
            import dlib
        except ImportError as exc:  # pragma: no cover - dlib is a hard dependency
            raise ModelError(f"dlib is not installed ({exc}); install 'dlib-bin' or 'dlib'") from exc
        folder = model_dir or models_dir()
        missing = [n for n in (RECOGNITION_MODEL, SHAPE_MODEL) if not (folder / n).is_file()]
        if missing:
            raise ModelError(f"dlib model file(s) missing in {folder}: {', '.join(missing)}")
        try:
            self._net = dlib.face_recognition_model_v1(str(folder / RECOGNITION_MODEL))
            self._shape5 = dlib.shape_predictor(str(folder / SHAPE_MODEL))
        except RuntimeError as exc:
            raise ModelError(f"cannot load dlib model from {folder}: {exc}") from exc
        self._dlib = dlib
        self.num_jitters = num_jitters

    # -- public --------------------------------------------------------------------------------------

    def embed(self, image: Image, face: Face) -> NDArray[np.float32]:
        """The (128,) float32 unit-length embedding of ``face`` in ``image`` (BGR)."""
        crop, offset = _crop_around(image, face)
        rgb = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        shape = self._shape(rgb, face, offset)
        vector = np.asarray(self._net.compute_face_descriptor(rgb, shape, self.num_jitters), np.float32)
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise ModelError("dlib returned an empty face descriptor")
        return vector / norm

    def embed_faces(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        """Copies of ``faces`` with ``embedding`` set (faces that already have one are embedded again)."""
        return [face.with_(embedding=self.embed(image, face)) for face in faces]

    def distance(self, a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
        """Euclidean distance between the unit-length versions of ``a`` and ``b`` (0 .. 2)."""
        a = np.asarray(a, dtype=np.float64).reshape(-1)
        b = np.asarray(b, dtype=np.float64).reshape(-1)
        if a.shape != b.shape:
            raise ValueError(f"embeddings differ in length: {a.shape[0]} and {b.shape[0]}")
        return float(np.linalg.norm(a / max(np.linalg.norm(a), 1e-12) - b / max(np.linalg.norm(b), 1e-12)))

    # -- alignment -----------------------------------------------------------------------------------

    def _shape(self, rgb: NDArray[np.uint8], face: Face, offset: NDArray[np.float32]) -> Any:
        """dlib ``full_object_detection`` with the 5 points dlib aligns on, in crop coordinates."""
        dlib = self._dlib
        x1, y1, x2, y2 = (face.bbox - np.tile(offset, 2)).tolist()
        rect = dlib.rectangle(round(x1), round(y1), round(x2), round(y2))
        if face.landmarks is not None and face.landmarks.shape[0] >= 468:
            pts = face.landmarks[list(MESH_DLIB5), :2] - offset
            return dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in pts.tolist()])
        return self._shape5(rgb, rect)


def _crop_around(image: Image, face: Face) -> tuple[Image, NDArray[np.float32]]:
    """The part of the image dlib's chip can reach (so a 4K frame is not converted whole), and its
    top-left corner. The chip spans the face plus 25 % padding each side, possibly rotated: a square
    twice the face's size about its centre covers it."""
    h, w = image.shape[:2]
    cx, cy = face.center.tolist()
    half = max(face.width, face.height)
    x1, y1 = max(int(cx - half), 0), max(int(cy - half), 0)
    x2, y2 = min(int(cx + half) + 1, w), min(int(cy + half) + 1, h)
    if x2 <= x1 or y2 <= y1:
        raise ModelError("face box lies outside the image")
    return image[y1:y2, x1:x2], np.array([x1, y1], dtype=np.float32)


def load_recognizer(name: str = "dlib") -> DlibRecognizer:
    """The recognizer called ``name`` (``RunConfig.recognizer``), models loaded."""
    if name == DlibRecognizer.name:
        return DlibRecognizer()
    raise UsageError(f"unknown recognizer {name!r} (available: {DlibRecognizer.name})")


__all__ = ["DEFAULT_THRESHOLD", "DlibRecognizer", "load_recognizer", "models_dir"]
