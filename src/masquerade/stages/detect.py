"""Embedded face analyser: MediaPipe BlazeFace detectors + face mesh, no download needed.

``MeshAnalyser.detect`` finds faces in a still or a keyframe: the full-range detector on the whole
image, the short-range detector on the whole image and on overlapping tiles (small faces in group
photos), boxes merged by NMS, then the face mesh on a rotated ROI around each box. The mesh's
face-presence probability decides what is a face, which also removes the detectors' false positives.
``MeshAnalyser.refine`` is the cheap tracking step for video: the mesh alone, on ROIs taken from the
previous landmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.config import DetectOptions
from masquerade.errors import UsageError
from masquerade.geometry.boxes import nms, weighted_nms
from masquerade.geometry.warp import warp_affine
from masquerade.stages.landmarks import (
    ASSETS,
    FaceMesh,
    kps5_from_mesh,
    roi_from_box,
    roi_from_landmarks,
)
from masquerade.types import Face, Image

__all__ = ["BlazeFace", "Detection", "MeshAnalyser", "kps5_from_mesh"]


@dataclass(frozen=True)
class _DetectorSpec:
    """One BlazeFace model and its MediaPipe decoding options (face_detection_*_range.pbtxt)."""

    file: str
    size: int
    strides: tuple[int, ...]
    interpolated_anchor: bool
    min_score: float


SHORT_RANGE = _DetectorSpec("face_detection_short_range.tflite", 128, (8, 16, 16, 16), True, 0.5)
FULL_RANGE = _DetectorSpec("face_detection_full_range_sparse.tflite", 192, (4,), False, 0.6)

NMS_IOU = 0.3  # MediaPipe's NonMaxSuppressionCalculator threshold for face detection
MESH_DEDUP_IOU = 0.5
MAX_DETECT_SIDE = 4096  # larger images are detected on a downscaled copy; the mesh runs at full size
# Short-range tiles. The model finds faces from ~15% of its input up; tiles overlap by a third, so a face
# up to a third of a tile lies whole in one. 224-px tiles: faces of ~34..75 px; 448: ~67..150 px;
# the whole-image passes take the larger ones.
SHORT_TILES = (448, 224)
MIN_SIDE = 8
MIN_FIRST_PRESENCE = 0.1  # mesh presence on the detector's ROI worth a second, better-centred pass
CONFIDENT_PRESENCE = 0.9  # below this, a face also needs the detector's word on its own crop
VERIFY_SCORE = 0.3
SCORE_CLIP = 100.0
_DEFAULTS = DetectOptions()  # frozen, so sharing it is safe


def ssd_anchors(size: int, strides: Sequence[int], interpolated: bool) -> NDArray[np.float32]:
    """Anchor centres (N, 2) in [0, 1], in the order of MediaPipe's SsdAnchorsCalculator.

    Face models use fixed-size anchors, so only the centres matter. Consecutive layers with the same
    stride share one feature map; each layer adds one anchor per cell, plus one interpolated-scale
    anchor when ``interpolated``.
    """
    centres: list[NDArray[np.float32]] = []
    layer = 0
    while layer < len(strides):
        last = layer
        per_cell = 0
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2 if interpolated else 1
            last += 1
        cells = math.ceil(size / strides[layer])
        steps = (np.arange(cells) + 0.5) / cells
        ys, xs = np.meshgrid(steps, steps, indexing="ij")
        grid = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)
        centres.append(np.repeat(grid, per_cell, axis=0))
        layer = last
    return np.concatenate(centres)


@dataclass(frozen=True)
class Detection:
    """A detector candidate in image pixels: box, score and 6 key points (BlazeFace order:
    subject's right eye, left eye, nose tip, mouth centre, right ear tragion, left ear tragion)."""

    box: NDArray[np.float32]
    score: float
    keypoints: NDArray[np.float32]


class BlazeFace:
    """One BlazeFace detector (short- or full-range) with MediaPipe's pre- and post-processing."""

    def __init__(self, spec: _DetectorSpec, threads: int | None = None) -> None:
        from ai_edge_litert.interpreter import Interpreter  # heavy import, only when built

        self.spec = spec
        self._interpreter = Interpreter(model_path=str(Path(ASSETS) / spec.file), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._regressors = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = ssd_anchors(spec.size, spec.strides, spec.interpolated_anchor)

    def __call__(self, image: Image, region: tuple[float, float, float, float] | None = None,
                 min_score: float | None = None) -> list[Detection]:
        """Raw candidates (before NMS) in ``region`` (x1, y1, x2, y2; default: the whole image),
        letterboxed into the model's square input like MediaPipe's ImageToTensor (zero border)."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = region if region is not None else (0.0, 0.0, float(w), float(h))
        n = self.spec.size
        scale = n / max(x2 - x1, y2 - y1)
        # tensor = scale * (image - region centre) + n / 2: a centred letterbox.
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        to_tensor = np.array([[scale, 0, n / 2 - scale * cx], [0, scale, n / 2 - scale * cy]])
        tensor = _normalise(warp_affine(image, to_tensor, (n, n)))
        return self._detect(tensor, min_score, offset=(n / 2 - scale * cx, n / 2 - scale * cy),
                            scale=(scale, scale))

    def tiled(self, image: Image, side: float, min_score: float | None = None) -> list[Detection]:
        """Raw candidates from overlapping square tiles of ``side`` image pixels (see ``_tiles``).

        The image is resized once so that a tile is exactly the model's input, then cut: much cheaper
        than one warp per tile.
        """
        h, w = image.shape[:2]
        n = self.spec.size
        if side >= max(h, w):
            return []
        lw, lh = max(n, round(w * n / side)), max(n, round(h * n / side))
        sx, sy = lw / w, lh / h
        level = _normalise(cv2.resize(image, (lw, lh), interpolation=cv2.INTER_AREA))
        dets: list[Detection] = []
        for x0, y0, _, _ in _tiles(lw, lh, n):
            x0, y0 = round(x0), round(y0)
            tensor = np.ascontiguousarray(level[y0:y0 + n, x0:x0 + n])
            dets += self._detect(tensor, min_score, offset=(-x0, -y0), scale=(sx, sy))
        return dets

    def _detect(self, tensor: NDArray[np.float32], min_score: float | None,
                offset: tuple[float, float], scale: tuple[float, float]) -> list[Detection]:
        """Run on one normalised input and decode; tensor = scale * image + offset, per axis."""
        n = self.spec.size
        self._interpreter.set_tensor(self._input, tensor[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._regressors)[0]
        logits = self._interpreter.get_tensor(self._scores)[0, :, 0].astype(np.float64)
        scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -SCORE_CLIP, SCORE_CLIP)))
        keep = np.flatnonzero(scores >= (self.spec.min_score if min_score is None else min_score))
        if keep.size == 0:
            return []
        anchors = self._anchors[keep]
        # Offsets are in input pixels, relative to unit-sized anchors (MediaPipe's reverse_output_order:
        # x, y, w, h, then 6 key points as x, y).
        reg = raw[keep].astype(np.float64) / n
        centre = reg[:, 0:2] + anchors
        half = reg[:, 2:4] / 2
        corners = np.stack([centre - half, centre + half], axis=1) * n  # (k, 2, 2) tensor pixels
        kps = (reg[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]) * n
        off, sc = np.asarray(offset), np.asarray(scale)
        boxes = ((corners - off) / sc).reshape(-1, 4)
        kps = (kps - off) / sc
        return [Detection(boxes[i].astype(np.float32), float(scores[keep[i]]), kps[i].astype(np.float32))
                for i in range(keep.size)]


def _normalise(bgr: Image) -> NDArray[np.float32]:
    """BGR uint8 -> RGB float32 in [-1, 1] (the BlazeFace input range)."""
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32) * (2.0 / 255.0) - 1.0


def merge_detections(dets: Sequence[Detection], threshold: float = NMS_IOU) -> list[Detection]:
    """Weighted NMS (MediaPipe's WEIGHTED algorithm): each kept box and its key points are the
    score-weighted mean of the candidates it absorbs; the score is the best one."""
    if not dets:
        return []
    boxes = np.stack([d.box for d in dets])
    scores = np.array([d.score for d in dets])
    kps = np.stack([d.keypoints for d in dets])
    merged = []
    for best, group in weighted_nms(boxes, scores, threshold):
        wts = scores[group][:, None]
        box = (boxes[group] * wts).sum(0) / wts.sum()
        kp = (kps[group] * wts[:, :, None]).sum(0) / wts.sum()
        merged.append(Detection(box.astype(np.float32), float(scores[best]), kp.astype(np.float32)))
    return merged


def _tiles(width: int, height: int, side: int) -> list[tuple[float, float, float, float]]:
    """Square tiles of ``side`` covering the image with at least 1/3 overlap (a face up to a third of
    a tile always lies whole inside one tile)."""
    if side >= max(width, height):
        return []

    def starts(length: int) -> list[float]:
        if length <= side:
            return [0.0]
        count = math.ceil((length - side) / (side * 2 / 3)) + 1
        return list(np.linspace(0, length - side, count))

    return [(x, y, x + side, y + side) for y in starts(height) for x in starts(width)]


def _as_bgr(image: Image) -> Image:
    """BGR uint8, contiguous; grey and BGRA are converted, an empty image becomes 1x1 black."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise UsageError(f"expected an 8-bit image, got {arr.dtype}")
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise UsageError(f"expected a BGR image (H, W, 3), got shape {arr.shape}")
    if arr.size == 0:
        return np.zeros((1, 1, 3), np.uint8)
    arr = np.ascontiguousarray(arr)
    if arr.ndim == 2 or arr.shape[2] == 1:
        return cv2.cvtColor(arr.reshape(arr.shape[:2]), cv2.COLOR_GRAY2BGR)
    if arr.shape[2] == 4:
        return cv2.cvtColor(arr, cv2.COLOR_BGRA2BGR)
    return arr


class MeshAnalyser:
    """Face detection + 468-point mesh + 5 key points, all from MediaPipe models bundled in the package.

    Interpreters are built once here; an analyser is not thread-safe (one per worker).
    """

    def __init__(self, options: DetectOptions = _DEFAULTS, threads: int | None = None) -> None:
        self.options = options
        self._full = BlazeFace(FULL_RANGE, threads)
        self._short = BlazeFace(SHORT_RANGE, threads)
        self._mesh = FaceMesh(threads)

    # -- detection -----------------------------------------------------------------------------------

    def candidates(self, image: Image) -> list[Detection]:
        """Detector candidates (after NMS, best first) in image pixels, before the mesh checks them."""
        image = _as_bgr(image)
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            return []
        factor = min(1.0, MAX_DETECT_SIDE / max(h, w))
        small = image if factor == 1.0 else cv2.resize(
            image, (round(w * factor), round(h * factor)), interpolation=cv2.INTER_AREA)
        min_score = self.options.min_score
        # Whole image: the full-range model sees faces from ~4% to ~70% of the long side, the
        # short-range one large close-ups; tiles bring small faces into the short-range model's range.
        dets = self._full(small, min_score=min_score) + self._short(small, min_score=min_score)
        if self.options.tiles:
            for side in SHORT_TILES:
                dets += self._short.tiled(small, side, min_score=min_score)
        merged = merge_detections(dets)
        if factor != 1.0:
            merged = [Detection(d.box / factor, d.score, d.keypoints / factor) for d in merged]
        return merged

    def detect(self, image: Image) -> list[Face]:
        """Every face in ``image``, sorted left to right; [] when there is none."""
        image = _as_bgr(image)
        threshold = self.options.presence_threshold
        faces: list[Face] = []
        for det in self.candidates(image):
            centre = (det.box[:2] + det.box[2:]) / 2
            if any(np.all((f.bbox[:2] <= centre) & (centre <= f.bbox[2:])) for f in faces):
                continue  # a second box on a face already meshed (candidates come best first)
            landmarks, presence = self._mesh(image, roi_from_box(det.box, det.keypoints[0], det.keypoints[1]))
            if presence < MIN_FIRST_PRESENCE:
                continue
            # A second pass on the ROI the mesh itself implies corrects a loose or off-centre box; small
            # turned faces often score ~0.4 on the detector's ROI and ~0.99 on their own.
            landmarks2, presence2 = self._mesh(image, roi_from_landmarks(landmarks))
            if presence2 >= presence:
                landmarks, presence = landmarks2, presence2
            if presence < threshold:
                continue
            if presence < CONFIDENT_PRESENCE and self._verify(image, landmarks) < VERIFY_SCORE:
                continue
            faces.append(_face(landmarks, presence))
        return sorted(_dedup(faces), key=lambda f: float(f.center[0]))

    def _verify(self, image: Image, landmarks: NDArray[np.float32]) -> float:
        """Short-range detector score for a face centred in the mesh's own, levelled ROI.

        The mesh alone sometimes half-believes in a face on a chin and collar next to a real face
        (presence ~0.8); the detector on the levelled crop scores such regions near 0.1 and real faces,
        turned ones included, above 0.45 (measured on the synthetic group photos of the tests).
        """
        roi = roi_from_landmarks(landmarks)
        n = SHORT_RANGE.size
        crop = warp_affine(image, roi.image_to_crop(n), (n, n))
        near = [d.score for d in self._short(crop, min_score=0.05)
                if np.all(np.abs((d.box[:2] + d.box[2:]) / 2 - n / 2) < n / 6)]
        return max(near, default=0.0)

    # -- tracking ------------------------------------------------------------------------------------

    def refine(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        """Re-fit the mesh of each face from its previous landmarks (no detector). Keeps order and
        track ids; drops faces whose presence falls below the threshold."""
        image = _as_bgr(image)
        out: list[Face] = []
        for face in faces:
            if face.landmarks is not None and face.landmarks.shape[0] >= 468:
                landmarks, presence = self._mesh(image, roi_from_landmarks(face.landmarks))
            else:
                # A face from another detector (box and 5 key points): fit as detect() does, from the
                # box levelled on the eyes, then once more from the mesh's own ROI.
                roi = roi_from_box(face.bbox, face.kps5[0], face.kps5[1])
                if roi.size < MIN_SIDE:
                    continue
                landmarks, presence = self._mesh(image, roi)
                if presence >= MIN_FIRST_PRESENCE:
                    landmarks2, presence2 = self._mesh(image, roi_from_landmarks(landmarks))
                    if presence2 >= presence:
                        landmarks, presence = landmarks2, presence2
            if presence < self.options.presence_threshold:
                continue
            out.append(_face(landmarks, presence, face.track_id))
        return out


def _face(landmarks: NDArray[np.float32], presence: float, track_id: int | None = None) -> Face:
    xy = landmarks[:, :2]
    bbox = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    return Face(bbox=bbox, kps5=kps5_from_mesh(landmarks), score=float(presence), landmarks=landmarks,
                track_id=track_id)


def _dedup(faces: list[Face]) -> list[Face]:
    """Two boxes can land on one face (e.g. a detector box on a neighbour's head); keep the best mesh."""
    if len(faces) < 2:
        return faces
    keep = nms(np.stack([f.bbox for f in faces]), np.array([f.score for f in faces]), MESH_DEDUP_IOU)
    return [faces[i] for i in keep]

