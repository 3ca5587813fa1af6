"""Content guard: refuse jobs on sexual content, before anything is written.

Runs NudeNet's bundled detector (YOLOv8n, 320 px input, shipped inside the ``nudenet`` package) with
onnxruntime on every source image, on image targets and on sampled video frames: the first frame,
at least one frame per second and one in every ``MAX_FRAMES_BETWEEN_CHECKS`` (time and count
together, so neither a caller's frame rate nor forged timestamps can thin the checks), the first frame
after every scene cut, and every frame where a face to be swapped appears for the first time. There is
no switch to turn it off: the only knob is the threshold, validated and fixed when the guard is made.

A 320-px look at a whole 4000-px photo cannot see a person who fills an eighth of it, while the face
detector still finds and swaps that person's face. So the guard looks at several views of an image
(:func:`plan_views`): the whole image; overlapping tiles when it is large (as the face detector tiles);
and a view around every face that will be swapped, sized to the face (the body below it included),
so anything big enough to be swapped is big enough to be checked. Views that another view already
shows at nearly the same scale are skipped, and all views run through the model as one batch.

Pre- and post-processing follow ``nudenet.NudeDetector`` (pad to a square on the bottom/right with
black, resize to 320, RGB in [0, 1]; each anchor takes its best class, then NMS), written here with
numpy so a view costs one model run and no Python loop over the 2,100 anchors.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from masquerade.errors import ContentRefused, ModelError
from masquerade.types import Face, FrameContext, Image

LABELS: tuple[str, ...] = (
    "FEMALE_GENITALIA_COVERED", "FACE_FEMALE", "BUTTOCKS_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "FEMALE_GENITALIA_EXPOSED", "MALE_BREAST_EXPOSED", "ANUS_EXPOSED", "FEET_EXPOSED",
    "BELLY_COVERED", "FEET_COVERED", "ARMPITS_COVERED", "ARMPITS_EXPOSED", "FACE_MALE",
    "BELLY_EXPOSED", "MALE_GENITALIA_EXPOSED", "ANUS_COVERED", "FEMALE_BREAST_COVERED",
    "BUTTOCKS_COVERED",
)
"""NudeNet 3.4's class order (also in the model's metadata)."""

REFUSED_LABELS: frozenset[str] = frozenset({
    "FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED",
    "BUTTOCKS_EXPOSED", "ANUS_EXPOSED",
})
"""Classes that refuse the job. Male chests, bellies, feet and armpits do not."""

DEFAULT_THRESHOLD = 0.4
"""Chosen from measurements on the real photos: the 4 portraits in examples/ (each whole, flipped, at
half size, cropped to each half and to the centre, grey, rotated: 40 images) and the synthetic group
photo of tests/stages (whole, flipped, halves). The highest raw score of any refused class on any
anchor was 0.16 (MALE_GENITALIA_EXPOSED on the top half of obama2.jpg; next 0.09; the group photo
<= 0.02), under NudeNet's own 0.2 reporting floor. 0.4 keeps more than twice that margin, and stays
below the scores the detector gives to clearly exposed parts (NudeNet's users commonly refuse at
0.5-0.6)."""

MIN_THRESHOLD = 0.25
"""Below this the detector's own noise floor (0.2 reporting cut, NMS at 0.25) would refuse at random."""
MAX_THRESHOLD = 0.6
"""The threshold is a tuning knob, not an off switch: a value near 1 would let almost anything through."""

MODEL_SHA256 = "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"
"""SHA-256 of ``nudenet/320n.onnx`` in nudenet 3.4.2 (pinned in pyproject)."""

INPUT_SIZE = 320
REPORT_FLOOR = 0.2  # NudeNet's own floor for reporting a detection
NMS_IOU = 0.45

REMEMBERED_VIEWS = 64
"""Views of still images whose answers a guard keeps (LRU), so a preview re-checks no frame twice."""

CUT_THUMB = (32, 18)
"""Width, height of the grey thumbnail the scene-cut detector compares from frame to frame."""
CUT_THRESHOLD = 30.0
"""Mean absolute difference (0-255) between consecutive thumbnails that counts as a scene cut. Measured
at 640x360: between two different real photos 50-85; the same photo panned 4 / 16 / 32 px in one frame
3-7 / 11-24 / 19-40, brightened by 15 levels 15, with sensor-like noise 1-2. A missed cut between two
similar shots is still caught by the once-a-second sampling; a fast pan only costs an extra check."""
SAMPLE_INTERVAL_S = 1.0
MAX_FRAMES_BETWEEN_CHECKS = 60
"""A frame in every 60 is checked whatever the frame rate or the timestamps say (the time rule alone
would check one frame in a million at a caller's ``fps=1e6``). Up to 60 fps the time rule checks more
often, so this costs nothing on ordinary video."""

TILE_ABOVE = 2560
"""Images and frames whose longer side exceeds this are also examined in tiles: a 4000-px photo or a 4K
frame is; 1080p and 1440p are not (their whole view, shrunk at most 8x, and the views around their
faces cover them)."""
TILE_SIDE = 1600
"""Longest side of a tile: the model sees it shrunk 5x (a 4000x3000 photo: 3x3 tiles; 4K: 3x2)."""
TILE_OVERLAP = 0.25
"""Neighbouring tiles share a quarter of a tile, so a person cut by one tile's edge lies whole in another."""
FACE_VIEW_SIDE = 10.0
"""Side of the view around a face, in face sizes: the face fills a tenth of it (32 of the model's 320
px, where NudeNet still finds faces), the body down to the knees of a standing person fits inside."""
FACE_VIEW_DROP = 2.0
"""How far below the face's centre the view's centre lies, in face sizes (the body is below the face):
the view spans 3 face sizes above the face's centre, 7 below and 5 to each side."""
COVERED_SCALE = 1.25
"""A view is skipped when one already planned holds 90 % of it and is at most this much larger (the model
would see the same pixels at nearly the same scale)."""
BATCH_VIEWS = 16
"""Views per model run (bounds the input tensor at 20 MB however many faces an image has)."""


@dataclass(frozen=True)
class Detection:
    """One detector output: NudeNet class name, score and box (x, y, w, h in image pixels)."""

    label: str
    score: float
    box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Refusal:
    """Why a job is refused: the strongest refused class and its score."""

    label: str
    score: float

    def message(self, where: str) -> str:
        part = self.label.lower().replace("_", " ")
        return (
            f"refused: {where} appears to show sexual content ({part}, score {self.score:.2f}); "
            "masquerade does not process such material"
        )


def decide(detections: Sequence[Detection], threshold: float = DEFAULT_THRESHOLD) -> Refusal | None:
    """The refusal rule: the highest-scoring refused class at or above ``threshold``, else None."""
    hits = [d for d in detections if d.label in REFUSED_LABELS and d.score >= threshold]
    if not hits:
        return None
    worst = max(hits, key=lambda d: d.score)
    return Refusal(worst.label, float(worst.score))


def model_path() -> Path:
    """Path of the ONNX file that nudenet ships, found without importing nudenet."""
    spec = importlib.util.find_spec("nudenet")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the nudenet package is not installed; it is required for the content guard")
    path = Path(next(iter(spec.submodule_search_locations))) / "320n.onnx"
    if not path.is_file():
        raise ModelError(f"nudenet's detector model is missing: {path}")
    return path


def preprocess(image: Image, size: int = INPUT_SIZE) -> tuple[np.ndarray, float]:
    """BGR image -> (1, 3, size, size) float32 RGB blob, and the scale from model to image pixels.

    Same geometry as NudeNet (the image in the top-left corner of a black square), but resized
    before padding, so a 12-megapixel photo never becomes a 16-megapixel square in memory.
    """
    h, w = image.shape[:2]
    side = max(h, w)
    new_w, new_h = max(1, round(w * size / side)), max(1, round(h * size / side))
    square = np.zeros((size, size, 3), dtype=np.uint8)
    square[:new_h, :new_w] = cv2.resize(image[:, :, :3], (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    blob = square[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
    return np.ascontiguousarray(blob), side / size


def postprocess(output: np.ndarray, scale: float, width: int, height: int) -> list[Detection]:
    """Raw (1, 4 + classes, anchors) output -> detections, NMS per class.

    Multi-label, unlike NudeNet's own best-class rule: YOLOv8's class scores are independent, and an
    anchor that scores 0.5 exposed and 0.55 covered must still count as 0.5 exposed.
    """
    rows = np.asarray(output)[0].T  # (anchors, 4 + classes)
    anchor_ids, class_ids = np.nonzero(rows[:, 4:] >= REPORT_FLOOR)
    if len(anchor_ids) == 0:
        return []
    scores = rows[anchor_ids, 4 + class_ids]
    cx, cy, bw, bh = (rows[anchor_ids, i] * scale for i in range(4))
    x = np.clip(cx - bw / 2, 0, width)
    y = np.clip(cy - bh / 2, 0, height)
    bw = np.minimum(bw, width - x)
    bh = np.minimum(bh, height - y)
    boxes = np.stack([x, y, bw, bh], axis=1)
    indices = cv2.dnn.NMSBoxesBatched(
        boxes.tolist(), scores.tolist(), class_ids.tolist(), REPORT_FLOOR, NMS_IOU
    )
    return [
        Detection(LABELS[int(class_ids[i])], float(scores[i]), tuple(float(v) for v in boxes[i]))
        for i in np.asarray(indices, dtype=np.int64).reshape(-1)
    ]


def grey_thumbnail(image: Image) -> np.ndarray:
    """Tiny grey thumbnail for the scene-cut detector (INTER_AREA averages, so noise cancels out).

    A strided view first keeps the cost near 1 ms on a 1080p frame; it still averages >= 16 pixels
    per thumbnail pixel.
    """
    h, w = image.shape[:2]
    step = max(1, min(h // (CUT_THUMB[1] * 4), w // (CUT_THUMB[0] * 4)))
    small = cv2.resize(image[::step, ::step, :3], CUT_THUMB, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)


def is_cut(previous: np.ndarray | None, current: np.ndarray) -> bool:
    """True when two consecutive thumbnails differ like two different shots."""
    return previous is not None and float(np.abs(current - previous).mean()) >= CUT_THRESHOLD


# -- what the model looks at ------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """A rectangle of the image the model examines (pixels, x1 and y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def side(self) -> int:
        return max(self.x1 - self.x0, self.y1 - self.y0)

    @property
    def area(self) -> int:
        return max(self.x1 - self.x0, 0) * max(self.y1 - self.y0, 0)

    def overlap(self, other: View) -> int:
        w = min(self.x1, other.x1) - max(self.x0, other.x0)
        h = min(self.y1, other.y1) - max(self.y0, other.y0)
        return max(w, 0) * max(h, 0)


def _spans(length: int) -> list[tuple[int, int]]:
    """Overlapping [start, end) spans of at most TILE_SIDE covering ``length``, evenly spaced."""
    if length <= TILE_SIDE:
        return [(0, length)]
    step = TILE_SIDE * (1 - TILE_OVERLAP)
    count = math.ceil((length - TILE_SIDE) / step) + 1
    starts = np.linspace(0, length - TILE_SIDE, count)
    return [(round(s), round(s) + TILE_SIDE) for s in starts]


def tile_views(height: int, width: int) -> list[View]:
    """Overlapping tiles of a large image (none when its longer side is at most TILE_ABOVE)."""
    if max(height, width) <= TILE_ABOVE:
        return []
    return [View(x0, y0, x1, y1) for y0, y1 in _spans(height) for x0, x1 in _spans(width)]


def face_view(face: Face, height: int, width: int) -> View:
    """The view around ``face``: FACE_VIEW_SIDE face sizes square, FACE_VIEW_DROP below, clipped."""
    size = max(face.size, 1.0)
    cx, cy = (float(v) for v in face.center)
    half = FACE_VIEW_SIDE * size / 2
    cy += FACE_VIEW_DROP * size
    x0, y0 = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    x1, y1 = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    if x1 <= x0 or y1 <= y0:  # a face box outside the image: look at the nearest edge
        x0, x1 = min(max(x0, 0), width - 1), min(max(x1, 1), width)
        y0, y1 = min(max(y0, 0), height - 1), min(max(y1, 1), height)
    return View(x0, y0, max(x1, x0 + 1), max(y1, y0 + 1))


def plan_views(height: int, width: int, faces: Sequence[Face] = (), whole: bool = True) -> list[View]:
    """The views the guard examines: the whole image and its tiles (``whole``), and one view around each
    face, less the views another already shows at nearly the same scale."""
    candidates = [View(0, 0, width, height), *tile_views(height, width)] if whole else []
    candidates += sorted((face_view(f, height, width) for f in faces), key=lambda v: -v.side)
    planned: list[View] = []
    for view in candidates:
        if not any(u.side <= COVERED_SCALE * view.side and u.overlap(view) >= 0.9 * view.area
                   for u in planned):
            planned.append(view)
    return planned


# -- video sampling ---------------------------------------------------------------------------------
class FrameSampler:
    """Decides which video frames the guard examines: the first; then whenever the next frame would come
    more than ``interval_s`` after the last check, or ``max_frames`` frames have passed since it; and
    the first frame after a cut.

    Stateful per video; a frame index that does not grow means a new video and restarts the policy.
    Frames must arrive in order.
    """

    def __init__(self, interval_s: float = SAMPLE_INTERVAL_S,
                 max_frames: int = MAX_FRAMES_BETWEEN_CHECKS) -> None:
        self.interval_s = interval_s
        self.max_frames = max_frames
        self.reset()

    def reset(self) -> None:
        self._last_index: int | None = None
        self._last_checked: float | None = None
        self._since = 0
        self._thumb: np.ndarray | None = None

    def should_check(self, ctx: FrameContext, fps: float) -> bool:
        if self._last_index is not None and ctx.index <= self._last_index:
            self.reset()
        self._last_index = ctx.index
        thumb = grey_thumbnail(ctx.image)
        cut = is_cut(self._thumb, thumb)
        self._thumb = thumb
        now = _frame_time(ctx, fps)
        self._since += 1
        # Check this frame when the next one would come more than interval_s after the last check,
        # so the gap never exceeds one second (23.976 fps: every 23 frames, 0.96 s; 30 fps: every 30).
        step = 1.0 / fps if fps > 0 else 0.0
        due = self._last_checked is None or not now - self._last_checked + step <= self.interval_s + 1e-6
        if cut or due or self._since >= self.max_frames:
            self._last_checked = now
            self._since = 0
            return True
        return False


def _digest(image: Image) -> bytes:
    """A strong digest of an image's pixels and shape (a few ms for 720p)."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=20)
    digest.update(repr(image.shape).encode())
    return digest.digest()


def _frame_time(ctx: FrameContext, fps: float) -> float:
    t = ctx.time
    if t is not None:
        return t
    return ctx.index / fps if fps > 0 else float(ctx.index)


@dataclass(frozen=True)
class GuardSettings:
    """The guard's settings, fixed when it is made."""

    threshold: float = DEFAULT_THRESHOLD

    def __post_init__(self) -> None:
        if not MIN_THRESHOLD <= self.threshold <= MAX_THRESHOLD:
            raise ValueError(f"guard threshold must be in [{MIN_THRESHOLD}, {MAX_THRESHOLD}]: "
                             f"{self.threshold}")


class ContentGuard:
    """One per run. ``check_image`` raises ``ContentRefused`` on sexual content; ``video`` gives the
    checker of one video's frames. The threshold is read-only once the guard is made."""

    def __init__(self, threshold: float = DEFAULT_THRESHOLD, *, threads: int | None = None) -> None:
        self._settings = GuardSettings(threshold)
        self._session = _load_session(threads)
        self._input = self._session.get_inputs()[0].name
        self.views_checked = 0
        """How many views the model examined (for timing reports)."""
        # What the model saw in recent still images, by (content digest, view): a live preview checks
        # the same frame again at every change of a setting. Same pixels, same view: same answer.
        self._seen: OrderedDict[tuple[bytes, View], list[Detection]] = OrderedDict()
        self._seen_lock = threading.Lock()

    @property
    def threshold(self) -> float:
        return self._settings.threshold

    def detect(self, image: Image, faces: Sequence[Face] = (), whole: bool = True,
               remember: bool = False) -> list[Detection]:
        """All detector outputs (exposed and covered classes alike, in image pixels) over the views of
        :func:`plan_views`: by default the whole image (tiled when large) and a view around each face.
        ``remember``: reuse (and keep) the answers for views of these very pixels seen recently."""
        if image.ndim != 3 or image.shape[2] < 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 image, got {image.dtype} {image.shape}")
        views = plan_views(image.shape[0], image.shape[1], faces, whole)
        detections: list[Detection] = []
        digest = b""
        if remember:
            digest = _digest(image)
            with self._seen_lock:
                known = [v for v in views if (digest, v) in self._seen]
                for view in known:
                    self._seen.move_to_end((digest, view))
                    detections += self._seen[(digest, view)]
            views = [v for v in views if v not in known]
        for first in range(0, len(views), BATCH_VIEWS):
            chunk = views[first : first + BATCH_VIEWS]
            prepared = [preprocess(image[v.y0 : v.y1, v.x0 : v.x1]) for v in chunk]
            blob = np.concatenate([b for b, _ in prepared])
            output = self._session.run(None, {self._input: blob})[0]
            for i, (view, (_, scale)) in enumerate(zip(chunk, prepared, strict=True)):
                found = [Detection(d.label, d.score, (d.box[0] + view.x0, d.box[1] + view.y0, *d.box[2:]))
                         for d in postprocess(output[i : i + 1], scale, view.x1 - view.x0, view.y1 - view.y0)]
                detections += found
                if remember:
                    with self._seen_lock:
                        self._seen[(digest, view)] = found
                        while len(self._seen) > REMEMBERED_VIEWS:
                            self._seen.popitem(last=False)
        self.views_checked += len(views)
        return detections

    def check_image(self, image: Image, label: str, faces: Sequence[Face] = ()) -> None:
        """Raise ``ContentRefused`` when ``image`` (a source or an image target) shows sexual content,
        looking also around each of ``faces`` (those that will be swapped, or the source's face)."""
        refusal = decide(self.detect(image, faces, remember=True), self.threshold)
        if refusal is not None:
            raise ContentRefused(refusal.message(label))

    def video(self, fps: float) -> VideoGuard:
        """A checker for the frames of one video (its own sampling state)."""
        return VideoGuard(self, fps)


class VideoGuard:
    """Checks one video's frames, in order: each sampled frame whole (tiled when large) with a view
    around each face to be swapped, and a view around a face to be swapped on the first frame it
    appears in (a new track), sampled or not."""

    def __init__(self, guard: ContentGuard, fps: float) -> None:
        self._guard = guard
        self._fps = float(fps)
        self._sampler = FrameSampler()
        self._seen_tracks: set[int] = set()
        self.frames_checked = 0
        """How many frames the model examined, wholly or around a new face."""

    def check(self, frame: FrameContext) -> None:
        """Examine ``frame`` when the sampling says so or a new face is to be swapped; raise
        ``ContentRefused`` on a hit. Call after selection: ``frame.selected`` are the faces to swap."""
        sampled = self._sampler.should_check(frame, self._fps)
        faces = list(frame.selected)
        if not sampled:
            faces = [f for f in faces if f.track_id is not None and f.track_id not in self._seen_tracks]
            if not faces:
                return
        self._seen_tracks.update(f.track_id for f in faces if f.track_id is not None)
        self.frames_checked += 1
        refusal = decide(self._guard.detect(frame.image, faces, whole=sampled), self._guard.threshold)
        if refusal is not None:
            when = f"frame {frame.index}"
            t = frame.time
            if t is not None:
                when += f" ({t:.2f} s)"
            raise ContentRefused(refusal.message(f"the target video at {when}"))


def _load_session(threads: int | None):  # -> onnxruntime.InferenceSession
    import onnxruntime as ort

    path = model_path()
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise ModelError(f"nudenet's detector at {path} is not the expected file (SHA-256 mismatch)")
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, untyped errors
        raise ModelError(f"could not load nudenet's detector: {exc}") from exc
