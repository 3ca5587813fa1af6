"""SCRFD face detector (InsightFace ``det_10g``) through ONNX Runtime.

Pre-processing (as InsightFace's ``scrfd.py``): keep the aspect ratio, resize so the longer side is
640, paste top-left into a black 640x640 canvas, RGB, ``(x - 127.5) / 128``.

Decoding: for each stride s in (8, 16, 32) the graph gives scores (N, 1), box distances (N, 4) and
key-point offsets (N, 10), N = (640/s)^2 * 2 anchors (each cell's centre twice). Distances and
offsets are in units of s from the anchor centre ``(col * s, row * s)``. Boxes above the score
threshold from all strides are merged by greedy NMS and mapped back by the letterbox scale.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.errors import ModelError
from masquerade.geometry.boxes import nms
from masquerade.models.manifest import ModelSpec
from masquerade.types import Face, Image

STRIDES = (8, 16, 32)
ANCHORS_PER_CELL = 2


def letterbox(image: Image, size: int) -> tuple[NDArray[np.uint8], NDArray[np.float32]]:
    """``image`` resized to fit ``size`` x ``size`` (longer side = size), top-left on black; and the
    (x, y) scale actually applied (the rounded size over the original size)."""
    h, w = image.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(round(w * scale), 1), max(round(h * scale), 1)
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    )
    return canvas, np.array([nw / w, nh / h], np.float32)


def anchor_centres(size: int, stride: int) -> NDArray[np.float32]:
    """(N, 2) anchor centres of one stride, row-major cells, each repeated per anchor."""
    n = size // stride
    ys, xs = np.mgrid[:n, :n]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_CELL, axis=0)


def decode(
    outputs: list[NDArray[np.float32]], size: int, score_threshold: float
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Candidate boxes (M, 4), key points (M, 5, 2) and scores (M,) in letterboxed input pixels.

    ``outputs`` are the nine graph outputs in the real order: scores, boxes, key points, each for
    strides 8, 16, 32. A leading batch axis of 1 is accepted.
    """
    if len(outputs) != 9:
        raise ModelError(
            f"SCRFD graph must have 9 outputs (3 strides x score/box/kps), it has {len(outputs)}"
        )
    outs = [np.asarray(o, np.float32) for o in outputs]
    outs = [o[0] if o.ndim == 3 else o for o in outs]
    boxes, kps, scores = [], [], []
    for i, stride in enumerate(STRIDES):
        sc, bb, kp = outs[i].reshape(-1), outs[i + 3].reshape(-1, 4), outs[i + 6].reshape(-1, 10)
        centres = anchor_centres(size, stride)
        if not (len(sc) == len(bb) == len(kp) == len(centres)):
            raise ModelError(f"SCRFD stride {stride}: {len(sc)} scores for {len(centres)} anchors")
        keep = np.flatnonzero(sc >= score_threshold)
        c = centres[keep]
        d = bb[keep] * stride
        boxes.append(np.concatenate([c - d[:, :2], c + d[:, 2:]], axis=1))
        kps.append(c[:, None, :] + kp[keep].reshape(-1, 5, 2) * stride)
        scores.append(sc[keep])
    return np.concatenate(boxes), np.concatenate(kps), np.concatenate(scores)


class ScrfdDetector:
    """Finds faces with SCRFD; returns them sorted left to right."""

    def __init__(
        self, session: Any, spec: ModelSpec, score_threshold: float = 0.5, nms_threshold: float = 0.4
    ) -> None:
        self.session = session
        self.spec = spec
        self.size = spec.size_px or 640
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self._input = session.get_inputs()[0].name

    def preprocess(self, image: Image) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """The (1, 3, size, size) blob and the letterbox scale."""
        canvas, scale = letterbox(image, self.size)
        rgb = canvas[:, :, ::-1].astype(np.float32)
        blob = ((rgb - self.spec.mean) / self.spec.std).transpose(2, 0, 1)[None]
        return np.ascontiguousarray(blob), scale

    def detect(self, image: Image) -> list[Face]:
        blob, scale = self.preprocess(image)
        outputs = self.session.run(None, {self._input: blob})
        boxes, kps, scores = decode(outputs, self.size, self.score_threshold)
        keep = nms(boxes, scores, self.nms_threshold)
        h, w = image.shape[:2]
        faces = []
        for i in keep:
            box = boxes[i] / np.tile(scale, 2)
            box[[0, 2]] = np.clip(box[[0, 2]], 0, w)
            box[[1, 3]] = np.clip(box[[1, 3]], 0, h)
            faces.append(Face(bbox=box, kps5=kps[i] / scale, score=float(scores[i])))
        return sorted(faces, key=lambda f: float(f.bbox[0]))
