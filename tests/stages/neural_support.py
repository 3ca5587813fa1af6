"""Shared helpers for the neural-stage tests: sample key points and stand-in sessions on disk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnx

from masquerade.geometry.align import affine_scale, crop_affine
from masquerade.models.manifest import get_spec
from masquerade.models.runtime import new_session
from masquerade.models.standins import to_bytes
from masquerade.types import Face

# Five key points of the sample photos' faces (from the embedded face mesh, checked by eye).
KPS = {
    "obama": [[442.77, 215.61], [548.54, 214.40], [496.69, 277.40], [432.88, 319.42], [558.78, 318.12]],
    "obama2": [[253.27, 370.08], [371.59, 383.73], [282.44, 455.56], [246.11, 521.63], [356.46, 530.58]],
    "biden": [[535.38, 325.12], [652.29, 351.38], [593.19, 413.29], [518.84, 459.25], [626.63, 478.27]],
}
BOXES = {
    "obama": (373, 127, 614, 421),
    "obama2": (190, 274, 479, 634),
    "biden": (425, 228, 714, 565),
}


def face(name: str, scale: float = 1.0, offset: tuple[float, float] = (0.0, 0.0)) -> Face:
    kps = np.asarray(KPS[name], np.float32) * scale + np.float32(offset)
    box = np.asarray(BOXES[name], np.float32) * scale + np.tile(np.float32(offset), 2)
    return Face(bbox=box, kps5=kps)


def session(tmp_path: Path, name: str, model: onnx.ModelProto):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(to_bytes(model))
    return new_session(path, "cpu", threads=1)


def native_scale_image(image: np.ndarray, name: str, model: str) -> tuple[np.ndarray, Face]:
    """``image`` resized so that the face sits at the model crop's own scale (1 crop px per frame px)."""
    spec = get_spec(model)
    m = crop_affine(np.asarray(KPS[name]), spec.template, spec.size_px)
    f = affine_scale(m)
    resized = cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    return resized, face(name, f)
