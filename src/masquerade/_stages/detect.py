"""Embedded face analyser: MediaPipe BlazeFace detectors + face mesh, no download needed.

``MeshAnalyser.detect`` finds faces in a still or a keyframe: the full-range detector on the whole
image, the short-range detector on the whole image and on overlapping tiles (small faces in group
photos), boxes merged by weighted NMS, then the face mesh on a rotated ROI around each box (twice: the
second time on the ROI the first mesh implies). A candidate is a face when the mesh's face-presence
probability passes ``DetectOptions.presence_threshold`` and, times the short-range detector's score on
the mesh's own levelled crop, passes ``MIN_EVIDENCE``: this removes the detectors' false positives and
the few the mesh alone half-believes. ``MeshAnalyser.refine`` is the cheap tracking step for video: the
mesh alone, on ROIs taken from the previous landmarks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages.blazeface import (
    FULL_RANGE,
    SHORT_RANGE,
    BlazeFace,
    Detection,
    merge_detections,
    tiles,
)
from masquerade._stages.landmarks import (
    FaceMesh,
    kps5_from_mesh,
    roi_from_box,
    roi_from_landmarks,
)
from masquerade.config import DetectOptions
from masquerade.errors import UsageError
from masquerade.geometry.boxes import area, iou
from masquerade.geometry.warp import warp_affine
from masquerade.types import Face, Image

__all__ = ["Detection", "MeshAnalyser", "kps5_from_mesh", "prefer_second_fit"]

MESH_DEDUP_IOU = 0.5
MAX_DETECT_SIDE = 4096  # larger images are detected on a downscaled copy; the mesh runs at full size
# Short-range tiles. The model finds faces from ~15% of its input up; tiles overlap by a third, so a face
# up to a third of a tile lies whole in one. 224-px tiles: faces of ~34..75 px; 448: ~67..150 px;
# the whole-image passes take the larger ones.
SHORT_TILES = (448, 224)
MIN_SIDE = 8
# The scan's border tiles (short-range model, tile sides as SHORT_TILES) reach this share of their side
# past the left and right edges, the rest padded with the edge pixels: a face that is coming in across
# the border, up to about half of it still outside, then sits inside a tile and looks like a face to
# the detector (cut at the tile's edge, it does not). Faces enter a frame from the sides; the top and
# bottom edges are left out to keep the scan cheap.
BORDER_REACH = 1 / 3
# A border tile runs only where its part inside the image changed since the ``previous`` frame given
# to the scan: at least BORDER_MOTION_SHARE of its sampled pixels (every BORDER_MOTION_STEP-th row and
# column) moved by more than BORDER_MOTION_LEVEL in some channel. A face coming in changes a few
# percent of a tile; still borders (the usual case) cost nothing.
BORDER_MOTION_STEP = 4
BORDER_MOTION_LEVEL = 16
BORDER_MOTION_SHARE = 0.01
MIN_FIRST_PRESENCE = 0.1  # mesh presence on the detector's ROI worth a second, better-centred pass
# A face needs presence x (short-range detector score on the mesh's levelled crop) >= MIN_EVIDENCE.
# Measured on 132 faces (synthetic groups, heads turned 60 degrees, rotated photos): >= 0.61; on the
# 8 false positives the mesh passed at presence >= 0.5 (suit buttons, badges, chin and collar): <= 0.52.
MIN_EVIDENCE = 0.55
# The second, re-centred mesh fit is kept unless its presence is lower by more than this. Presence
# saturates near 1 on both fits of a real face (0.999999999994 vs 0.999999999989): comparing them lets
# noise pick, and the first fit on a loose box can sit a feature too low (eyes on the lower lids,
# brows on the upper lids) while scoring as high.
SECOND_FIT_MARGIN = 0.1
# refine() checks that evidence only below this presence (tracked faces sit at 0.99+: no cost).
REFINE_CONFIDENT = 0.95
# refine(): fit a second time when the face moved by more than this fraction of the ROI side (about 5% of
# the face width) or changed size by more than ~10%.
REFIT_SHIFT = 0.03
REFIT_SCALE = 0.1
_DEFAULTS = DetectOptions()  # frozen, so sharing it is safe


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

    def candidates(self, image: Image, tiles: bool | None = None, short: bool = True) -> list[Detection]:
        """Detector candidates (after NMS, best first) in image pixels, before the mesh checks them.
        ``tiles`` overrides ``DetectOptions.tiles`` (the small-face passes); ``short=False`` leaves out
        the short-range model's whole-image pass (close-ups filling most of the frame)."""
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
        dets = self._full(small, min_score=min_score)
        if short:
            dets += self._short(small, min_score=min_score)
        if self.options.tiles if tiles is None else tiles:
            for side in SHORT_TILES:
                dets += self._short.tiled(small, side, min_score=min_score)
        merged = merge_detections(dets)
        if factor != 1.0:
            merged = [Detection(d.box / factor, d.score, d.keypoints / factor) for d in merged]
        return merged

    def detect(self, image: Image) -> list[Face]:
        """Every face in ``image``, sorted left to right; [] when there is none.

        Each face has the mesh (``landmarks``, (468, 3) image pixels, z scaled like x), ``bbox`` = the
        mesh's extent (it may reach past the image border), ``kps5`` from the mesh and ``score`` = the
        mesh's face-presence probability.
        """
        image = _as_bgr(image)
        faces: list[Face] = []
        for det in self.candidates(image):
            if any(_same_face(det.box, f.bbox) for f in faces):
                continue  # a second box on a face already meshed (candidates come best first)
            face = self._mesh_face(image, det)
            if face is not None:
                faces.append(face)
        return sorted(_dedup(faces), key=lambda f: float(f.center[0]))

    def scan(self, image: Image, known: Sequence[Face], previous: Image | None = None,
             tiles: Sequence[tuple[float, float, float, float]] = (), short: bool = False) -> list[Face]:
        """Faces that are not among ``known``, found by the full-range detector's whole-image pass
        and the short-range one on tiles across the left and right borders (``border_candidates``):
        the tracker's frequent look for a face that has just come in or turned back. Costs a few
        small detector runs when nothing is new; the mesh and its checks run only on a box that no
        known face explains. ``previous``: an earlier frame of the same video (the tracker's last
        scan), to run only the border tiles where something moved since. ``tiles``: some of the
        small-face tiles (``tile_regions``) to look at as well, so a tracker can spread the small-face
        search over its scans instead of paying for all of it in one frame. ``short``: also the
        short-range whole-image pass (faces that fill most of the frame).
        """
        image = _as_bgr(image)
        faces: list[Face] = []
        dets = self.candidates(image, tiles=False, short=short)
        min_score = self.options.min_score
        dets += [d for region in tiles for d in self._short(image, region, min_score)]
        for det in merge_detections(dets + self.border_candidates(image, previous)):
            if any(_same_face(det.box, f.bbox) or float(iou(f.bbox, det.box[None])[0]) > 0.3
                   for f in [*known, *faces]):
                continue
            face = self._mesh_face(image, det)
            if face is not None and not any(_overlapping(face, f) for f in known):
                faces.append(face)
        return sorted(faces, key=lambda f: float(f.center[0]))

    def tile_regions(self, shape: tuple[int, ...]) -> list[tuple[float, float, float, float]]:
        """The small-face tiles ``detect`` runs the short-range model on, as image regions
        (x1, y1, x2, y2), for an image of ``shape``; [] when tiles are off or the image is too large
        (``detect`` then works on a downscaled copy)."""
        h, w = shape[:2]
        if not self.options.tiles or max(h, w) > MAX_DETECT_SIDE or min(h, w) < MIN_SIDE:
            return []
        return [region for side in SHORT_TILES for region in tiles(w, h, side)]

    def border_candidates(self, image: Image, previous: Image | None = None) -> list[Detection]:
        """Raw short-range candidates on square tiles that straddle the left and right borders
        (``BORDER_REACH`` of each tile outside, edge pixels repeated there): faces coming in across
        the border while the whole-image passes still miss them. With ``previous`` (an earlier frame
        of the same size), only the tiles whose inside part changed since then run."""
        image = _as_bgr(image)
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE or max(h, w) > MAX_DETECT_SIDE:
            return []  # (a huge frame: the scan's whole-image pass and the full detection suffice)
        motion = None
        if previous is not None:
            previous = _as_bgr(previous)
            if previous.shape == image.shape:
                motion = _motion(image, previous)
        dets: list[Detection] = []
        for side in SHORT_TILES:
            outside = side * BORDER_REACH
            if side - outside >= w / 2:
                continue  # the tiles would meet in the middle: the image is no wider than a face
            ys = [(h - side) / 2] if h <= side else [t[1] for t in tiles(side, h, side)]
            for x1 in (-outside, w - side + outside):
                for y1 in ys:
                    region = (x1, y1, x1 + side, y1 + side)
                    if motion is None or _moved(motion, region):
                        dets += self._short(image, region, self.options.min_score, replicate=True)
        return dets

    def _mesh_face(self, image: Image, det: Detection) -> Face | None:
        """The face a detector box holds, meshed and checked, or None."""
        landmarks, presence = self._mesh(image, roi_from_box(det.box, det.keypoints[0], det.keypoints[1]))
        if presence < MIN_FIRST_PRESENCE:
            return None
        # A second pass on the ROI the mesh itself implies corrects a loose or off-centre box; small
        # turned faces often score ~0.4 on the detector's ROI and ~0.99 on their own.
        landmarks2, presence2 = self._mesh(image, roi_from_landmarks(landmarks))
        if prefer_second_fit(presence, presence2):
            landmarks, presence = landmarks2, presence2
        if presence < self.options.presence_threshold:
            return None
        # The mesh alone half-believes in some non-faces (a chin and collar next to a face, dark
        # suit buttons, a round badge: presence 0.6-0.98); a second, independent opinion on the
        # mesh's own levelled crop settles it.
        if presence * self._verify(image, landmarks) < MIN_EVIDENCE:
            return None
        return _face(landmarks, presence)

    def _verify(self, image: Image, landmarks: NDArray[np.float32]) -> float:
        """Short-range detector score for a face centred in the mesh's own, levelled ROI (0 if none)."""
        roi = roi_from_landmarks(landmarks)
        n = SHORT_RANGE.size
        # Edge pixels repeated past the border, as for the mesh: black there reads as "no face" to the
        # detector and would reject faces cut by the image border.
        crop = warp_affine(image, roi.image_to_crop(n), (n, n), replicate=True)
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
            from_box = face.landmarks is None or face.landmarks.shape[0] < 468
            if not from_box:
                roi = roi_from_landmarks(face.landmarks)
            else:
                # A face from another detector (box and 5 key points): start as detect() does, from
                # the box levelled on the eyes; the second pass below then always runs.
                roi = roi_from_box(face.bbox, face.kps5[0], face.kps5[1])
            if roi.size < MIN_SIDE:
                continue
            landmarks, presence = self._mesh(image, roi)
            if presence >= MIN_FIRST_PRESENCE:
                follow = roi_from_landmarks(landmarks)
                # The mesh pulls its points toward the ROI's centre when the face is off-centre, so a
                # fast-moving face lags more every frame until it is lost. When the face has moved or
                # changed size noticeably, fit it again on the ROI it now implies.
                moved = math.hypot(follow.cx - roi.cx, follow.cy - roi.cy) > REFIT_SHIFT * roi.size
                resized = abs(math.log(max(follow.size, 1e-6) / roi.size)) > REFIT_SCALE
                if from_box or moved or resized:
                    landmarks2, presence2 = self._mesh(image, follow)
                    if prefer_second_fit(presence, presence2) or presence2 >= self.options.presence_threshold:
                        landmarks, presence = landmarks2, presence2
            if presence < self.options.presence_threshold:
                continue
            # A track whose face left can settle on something the mesh half-believes (dark clothing):
            # below full confidence, ask for the same evidence as detect().
            if presence < REFINE_CONFIDENT and presence * self._verify(image, landmarks) < MIN_EVIDENCE:
                continue
            out.append(_face(landmarks, presence, face.track_id))
        return out


def prefer_second_fit(first: float, second: float) -> bool:
    """Keep the re-centred second mesh fit (presence ``second``) over the first unless clearly worse."""
    return second >= first - SECOND_FIT_MARGIN


def _motion(image: Image, previous: Image) -> NDArray[np.bool_]:
    """Per sampled pixel (every BORDER_MOTION_STEP-th row and column from the image's corner), whether it
    changed by more than BORDER_MOTION_LEVEL in some channel between ``previous`` and ``image``. One
    sparse map for all of a scan's border tiles, built the cheap way: a nearest-neighbour resize by
    1/step takes the same pixels as a strided slice at a sixth of the cost, and a channel max over
    views beats numpy's ``max(axis=2)`` 25 times (0.3 ms per 720p scan, against 3.5 ms for its 12 tiles
    sampled one by one)."""
    f = 1 / BORDER_MOTION_STEP
    a, b = (cv2.resize(x, None, fx=f, fy=f, interpolation=cv2.INTER_NEAREST) for x in (image, previous))
    diff = cv2.absdiff(a, b)
    return np.maximum(np.maximum(diff[..., 0], diff[..., 1]), diff[..., 2]) > BORDER_MOTION_LEVEL


def _moved(motion: NDArray[np.bool_], region: tuple[float, float, float, float]) -> bool:
    """Whether the part of ``region`` inside the image changed: BORDER_MOTION_SHARE of its samples in
    ``motion`` (``_motion``'s map)."""
    step = BORDER_MOTION_STEP
    rows, cols = motion.shape
    r0, c0 = max(0, math.ceil(region[1] / step)), max(0, math.ceil(region[0] / step))
    r1, c1 = min(rows, math.ceil(region[3] / step)), min(cols, math.ceil(region[2] / step))
    window = motion[r0:r1, c0:c1]
    return window.size > 0 and np.count_nonzero(window) >= BORDER_MOTION_SHARE * window.size


def _face(landmarks: NDArray[np.float32], presence: float, track_id: int | None = None) -> Face:
    xy = landmarks[:, :2]
    bbox = np.concatenate([xy.min(axis=0), xy.max(axis=0)])
    return Face(bbox=bbox, kps5=kps5_from_mesh(landmarks), score=float(presence), landmarks=landmarks,
                track_id=track_id)


def _same_face(box: NDArray[np.float32], face_box: NDArray[np.float32]) -> bool:
    """A detector box centred inside a meshed face's box and of a similar size is that face again (a
    smaller face in front of a bigger one is not)."""
    centre = (box[:2] + box[2:]) / 2
    inside = bool(np.all((face_box[:2] <= centre) & (centre <= face_box[2:])))
    ratio = float(box[2] - box[0]) / max(float(face_box[2] - face_box[0]), 1e-6)
    return inside and 0.5 < ratio < 2.0


def _dedup(faces: list[Face]) -> list[Face]:
    """Two candidates can end on one face (two meshes, one looser); keep the more confident one.

    Same face: boxes overlap by IoU > 0.5, or the smaller box lies mostly (> 60%) in the larger one
    with the centres close (a loose mesh around a tight one; real neighbours never nest like that).
    """
    order = sorted(range(len(faces)), key=lambda i: -faces[i].score)
    kept: list[Face] = []
    for i in order:
        face = faces[i]
        if not any(_overlapping(face, other) for other in kept):
            kept.append(face)
    return kept


def _overlapping(a: Face, b: Face) -> bool:
    if float(iou(a.bbox, b.bbox[None])[0]) > MESH_DEDUP_IOU:
        return True
    inter = area(np.concatenate([np.maximum(a.bbox[:2], b.bbox[:2]), np.minimum(a.bbox[2:], b.bbox[2:])]))[0]
    smaller = min(area(a.bbox)[0], area(b.bbox)[0])
    close = float(np.linalg.norm(a.center - b.center)) < 0.35 * max(a.width, b.width)
    return smaller > 0 and inter / smaller > 0.6 and close
