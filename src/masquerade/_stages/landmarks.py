"""MediaPipe face mesh (468 landmarks) on a rotated region of interest, and the 5 key points from it.

The mesh model sees a 192x192 crop of a square, rotated ROI. Conventions follow MediaPipe's
``face_landmark_front`` graphs: the ROI's rotation levels the line between the eyes, its side is 1.5x
the long side of the face box, and ``rotation`` is in radians, positive = clockwise on screen (image y
points down).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages.litert import load_interpreter
from masquerade.geometry.warp import warp_affine
from masquerade.types import Image, Points

MESH_SIZE = 192
ASSETS = Path(__file__).resolve().parent.parent / "assets" / "mediapipe"

# Mesh indices (canonical MediaPipe topology). "Right"/"left" are the subject's: the subject's right
# eye is on the image's left for an upright face, which is InsightFace's first key point.
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP = 1
MOUTH_RIGHT = 61
MOUTH_LEFT = 291
EYE_OUTER_RIGHT = 33
EYE_OUTER_LEFT = 263

ROI_SCALE = 1.5


@dataclass(frozen=True)
class Roi:
    """A square, rotated region of the image: centre and side in pixels, rotation in radians."""

    cx: float
    cy: float
    size: float
    rotation: float = 0.0

    def crop_to_image(self, crop_size: int = MESH_SIZE) -> NDArray[np.float64]:
        """2x3 affine mapping crop pixels (u, v) into image pixels."""
        s = self.size / crop_size
        c, n = math.cos(self.rotation), math.sin(self.rotation)
        half = crop_size / 2
        # image = centre + R(rotation) @ (scale * ((u, v) - half))
        return np.array(
            [
                [c * s, -n * s, self.cx - (c * half - n * half) * s],
                [n * s, c * s, self.cy - (n * half + c * half) * s],
            ]
        )

    def image_to_crop(self, crop_size: int = MESH_SIZE) -> NDArray[np.float64]:
        """2x3 affine mapping image pixels into crop pixels."""
        return cv2.invertAffineTransform(self.crop_to_image(crop_size))


def eye_rotation(start: NDArray[np.floating], end: NDArray[np.floating]) -> float:
    """ROI rotation that levels the vector start -> end (MediaPipe's DetectionsToRects rule)."""
    dx, dy = float(end[0] - start[0]), float(end[1] - start[1])
    return -math.atan2(-dy, dx)


def roi_from_box(box: NDArray[np.floating], right_eye: NDArray[np.floating],
                 left_eye: NDArray[np.floating]) -> Roi:
    """ROI around a detector box, turned so the detector's eye key points are level."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * ROI_SCALE
    return Roi((x1 + x2) / 2, (y1 + y2) / 2, side, eye_rotation(right_eye, left_eye))


def roi_from_landmarks(landmarks: NDArray[np.floating]) -> Roi:
    """ROI around a previous mesh: levelled on the outer eye corners, 1.5x the mesh's extent."""
    pts = np.asarray(landmarks, dtype=np.float64)[:, :2]
    rotation = eye_rotation(pts[EYE_OUTER_RIGHT], pts[EYE_OUTER_LEFT])
    c, n = math.cos(rotation), math.sin(rotation)
    # Measure the extent in the face's own (levelled) frame so a tilted face does not inflate it.
    local = pts @ np.array([[c, -n], [n, c]])
    lo, hi = local.min(axis=0), local.max(axis=0)
    mid = (lo + hi) / 2
    centre = np.array([[c, n], [-n, c]]).T @ mid
    side = float(max(hi - lo)) * ROI_SCALE
    return Roi(float(centre[0]), float(centre[1]), side, rotation)


def kps5_from_mesh(landmarks: NDArray[np.floating]) -> Points:
    """The 5 standard key points (InsightFace order) from a (468, 2|3) mesh: eye centres, nose tip,
    mouth corners; the subject's right side (the image's left on an upright face) first."""
    lm = np.asarray(landmarks, dtype=np.float32)
    if lm.ndim != 2 or lm.shape[0] < 468 or lm.shape[1] < 2:
        raise ValueError(f"expected a (468, 2|3) face mesh, got {lm.shape}")
    pts = lm[:, :2]
    return np.stack(
        [
            pts[list(RIGHT_EYE)].mean(axis=0),
            pts[list(LEFT_EYE)].mean(axis=0),
            pts[NOSE_TIP],
            pts[MOUTH_RIGHT],
            pts[MOUTH_LEFT],
        ]
    ).astype(np.float32)


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 80.0), -80.0)))


class FaceMesh:
    """The face_landmark.tflite model: one rotated ROI in, 468 landmarks and a presence score out."""

    def __init__(self, threads: int | None = None, model_path: Path | None = None) -> None:
        self._interpreter = load_interpreter(model_path or ASSETS / "face_landmark.tflite", threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        # Tell the outputs apart by size, not by order or name (names differ between model releases).
        self._landmarks = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 468 * 3)
        self._flag = next(o["index"] for o in outputs if int(np.prod(o["shape"])) == 1)

    def crop(self, image: Image, roi: Roi) -> NDArray[np.float32]:
        """The model's input: the ROI warped to 192x192, RGB, scaled to [0, 1]."""
        # Parts of the ROI outside the image (a face at the border) repeat the edge pixels, as in
        # MediaPipe's face mesh graphs (measured: extrapolated key points ~15% closer than with black).
        patch = warp_affine(image, roi.image_to_crop(), (MESH_SIZE, MESH_SIZE), replicate=True)
        rgb = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)
        return (rgb.astype(np.float32) * (1.0 / 255.0))[None]

    def __call__(self, image: Image, roi: Roi) -> tuple[NDArray[np.float32], float]:
        """Landmarks (468, 3) in image pixels (z scaled like x) and the face-presence probability."""
        self._interpreter.set_tensor(self._input, self.crop(image, roi))
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._landmarks).reshape(468, 3).astype(np.float64)
        presence = _sigmoid(float(self._interpreter.get_tensor(self._flag).reshape(-1)[0]))
        m = roi.crop_to_image()
        xy = raw[:, :2] @ m[:, :2].T + m[:, 2]
        z = raw[:, 2] * (roi.size / MESH_SIZE)
        return np.column_stack([xy, z]).astype(np.float32), presence
