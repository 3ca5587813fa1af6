"""Axis-aligned box maths: intersection over union and non-maximum suppression.

Boxes are (N, 4) arrays of x1, y1, x2, y2 in pixels (or any common unit).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def area(boxes: NDArray[np.floating]) -> NDArray[np.float64]:
    """Area of each box; inverted boxes count as empty."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def iou(box: NDArray[np.floating], boxes: NDArray[np.floating]) -> NDArray[np.float64]:
    """IoU of one box against each of ``boxes``, shape (N,)."""
    a = np.asarray(box, dtype=np.float64).reshape(4)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = area(a[None])[0] + area(b) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou_matrix(a: NDArray[np.floating], b: NDArray[np.floating]) -> NDArray[np.float64]:
    """Pairwise IoU, shape (len(a), len(b))."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    return np.stack([iou(box, b) for box in a])


def nms(boxes: NDArray[np.floating], scores: NDArray[np.floating], threshold: float) -> list[int]:
    """Greedy NMS: indices of the kept boxes, best score first."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = list(np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"))
    keep: list[int] = []
    while order:
        best = order.pop(0)
        keep.append(int(best))
        if order:
            overlaps = iou(b[best], b[order])
            order = [i for i, o in zip(order, overlaps, strict=True) if o <= threshold]
    return keep


def weighted_nms(
    boxes: NDArray[np.floating], scores: NDArray[np.floating], threshold: float
) -> list[tuple[int, NDArray[np.int64]]]:
    """MediaPipe-style weighted NMS grouping.

    Returns, best score first, (index of the best box, indices of every box it absorbs, itself
    included). Callers average whatever they carry (boxes, key points) over each group, weighted by
    score; that is steadier than keeping only the single best anchor.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    remaining = np.argsort(-s, kind="stable")
    groups: list[tuple[int, NDArray[np.int64]]] = []
    while remaining.size:
        best = int(remaining[0])
        overlaps = iou(b[best], b[remaining])
        absorbed = overlaps > threshold
        absorbed[0] = True
        groups.append((best, remaining[absorbed].astype(np.int64)))
        remaining = remaining[~absorbed]
    return groups
