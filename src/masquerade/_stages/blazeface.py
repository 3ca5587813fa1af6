"""MediaPipe BlazeFace face detectors (short- and full-range) with MediaPipe's pre- and post-processing.

Parameters follow MediaPipe's ``face_detection_short_range.pbtxt`` / ``face_detection_full_range.pbtxt``
(and the TF.js port's constants): SSD anchors (fixed size; short-range strides 8, 16, 16, 16 with an
interpolated anchor, full-range stride 4), input letterboxed with a black border and scaled to [-1, 1],
offsets decoded in input pixels (``reverse_output_order``), sigmoid scores clipped at +-100, weighted
NMS at IoU 0.3. Key points, in order: the subject's right eye, left eye, nose tip, mouth centre, right
ear tragion, left ear tragion.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages.landmarks import ASSETS
from masquerade._stages.litert import load_interpreter
from masquerade.geometry.boxes import weighted_nms
from masquerade.geometry.warp import warp_affine
from masquerade.types import Image

__all__ = ["FULL_RANGE", "SHORT_RANGE", "BlazeFace", "Detection", "merge_detections", "ssd_anchors", "tiles"]


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
SCORE_CLIP = 100.0


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
        self.spec = spec
        self._interpreter = load_interpreter(ASSETS / spec.file, threads)
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = self._interpreter.get_output_details()
        self._regressors = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._scores = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = ssd_anchors(spec.size, spec.strides, spec.interpolated_anchor)

    def __call__(self, image: Image, region: tuple[float, float, float, float] | None = None,
                 min_score: float | None = None, replicate: bool = False) -> list[Detection]:
        """Raw candidates (before NMS) in ``region`` (x1, y1, x2, y2; default: the whole image),
        letterboxed into the model's square input like MediaPipe's ImageToTensor (zero border; with
        ``replicate``, the image's edge pixels repeated wherever the region reaches past the image)."""
        h, w = image.shape[:2]
        x1, y1, x2, y2 = region if region is not None else (0.0, 0.0, float(w), float(h))
        n = self.spec.size
        scale = n / max(x2 - x1, y2 - y1)
        # tensor = scale * (image - region centre) + n / 2: a centred letterbox.
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        to_tensor = np.array([[scale, 0, n / 2 - scale * cx], [0, scale, n / 2 - scale * cy]])
        tensor = _normalise(warp_affine(image, to_tensor, (n, n), replicate=replicate))
        return self._detect(tensor, min_score, offset=(n / 2 - scale * cx, n / 2 - scale * cy),
                            scale=(scale, scale))

    def tiled(self, image: Image, side: float, min_score: float | None = None) -> list[Detection]:
        """Raw candidates from overlapping square tiles of ``side`` image pixels (see ``tiles``).

        The image is scaled once so that a tile is exactly the model's input, then cut: much cheaper
        than one warp per tile.
        """
        h, w = image.shape[:2]
        n = self.spec.size
        if side >= max(h, w):
            return []
        lw, lh = max(n, round(w * n / side)), max(n, round(h * n / side))
        sx, sy = lw / w, lh / h
        level = _normalise(warp_affine(image, np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]]), (lw, lh)))
        dets: list[Detection] = []
        for x0, y0, _, _ in tiles(lw, lh, n):
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


def tiles(width: int, height: int, side: int) -> list[tuple[float, float, float, float]]:
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
