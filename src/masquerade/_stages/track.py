"""Face tracking across video frames: follow each face with the mesh, detect only now and then.

Per frame (``FaceTracker.update``):
1. *Refine*: the analyser re-fits the mesh of every live track on the ROI its previous (raw, not
   smoothed) landmarks imply. Cheap, and it keeps a face's identity without any matching.
2. *Detect* when due: every ``redetect_interval`` frames, whenever refine lost a face, while a lost
   track waits to be found again, and on every frame while nothing is tracked. Detections are matched
   to tracks by IoU; unmatched detections start new tracks; a track missed by ``max_missed``
   detection passes in a row is dropped.
   Between detection passes, every ``scan_interval`` frames, the analyser's cheap ``scan`` (when it
   has one: the whole-image detector pass, and tiles across the side borders where the frame moved
   since the last scan or detection) looks for a face no track explains: one that is coming in,
   even still half outside, or turned back to the camera. It joins at once, so a newcomer is swapped
   within ``scan_interval`` frames instead of waiting for the next full detection. (The tracker keeps
   a reference to that last frame: frames must not be changed in place after ``update``.)
   With an analyser that has small-face tiles (``tile_regions``), each scan also runs the next
   ``scan_tiles`` of them in turn, and while every track is followed the periodic pass is such a scan
   too (with the short-range whole-image pass; it counts no misses: refine checks every followed face
   on every frame): the small-face search costs a few detector runs per scan instead of a 60-run
   detection pass every ``redetect_interval`` frames; at 720p the tiles come round every 33 frames
   instead of every 12 (at 1080p, 69). Full detection passes remain for the first frame and for
   lost faces.
3. *Smooth*: each track's landmarks, key points and box go through its own One-Euro filter (see
   ``geometry.smoothing``), timed in frames / fps so skipped frames are handled.

The analyser sees raw landmarks only, so smoothing never feeds lag back into the ROI.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from masquerade._stages.protocols import Analyser
from masquerade.config import TrackOptions
from masquerade.geometry.boxes import iou_matrix
from masquerade.geometry.smoothing import OneEuroFilter, OneEuroParams
from masquerade.types import Face, Image

MATCH_IOU = 0.3
"""A detection continues a track when their boxes overlap at least this much."""
DUPLICATE_IOU = 0.6
"""Two live tracks this close have converged on one face: the younger one is dropped."""


@dataclass
class _Track:
    track_id: int
    face: Face
    """Last raw face (what the analyser fits from)."""
    last_frame: int
    filter: OneEuroFilter
    missed: int = 0
    """Consecutive detection passes that did not see this track."""
    lost: bool = False
    """Refine lost it; it only comes back if a detection matches its last box."""


def _pack(face: Face) -> NDArray[np.float32]:
    """Landmarks, key points and box corners as one (N, 3) point set for the filter."""
    parts = [np.pad(face.kps5, ((0, 0), (0, 1))), np.pad(face.bbox.reshape(2, 2), ((0, 0), (0, 1)))]
    if face.landmarks is not None:
        lm = face.landmarks if face.landmarks.shape[1] == 3 else np.pad(face.landmarks, ((0, 0), (0, 1)))
        parts.insert(0, lm)
    return np.concatenate(parts).astype(np.float32)


def _unpack(face: Face, points: NDArray[np.float32]) -> Face:
    n = 0 if face.landmarks is None else face.landmarks.shape[0]
    landmarks = None
    if face.landmarks is not None:
        landmarks = points[:n, : face.landmarks.shape[1]]
    kps5 = points[n:n + 5, :2]
    bbox = points[n + 5:n + 7, :2].reshape(4)
    return face.with_(landmarks=landmarks, kps5=kps5, bbox=bbox)


class FaceTracker:
    """Stateful tracking stage: one per video run (``reset`` between runs)."""

    def __init__(self, analyser: Analyser, options: TrackOptions | None = None, fps: float = 25.0,
                 smoothing: OneEuroParams | None = None) -> None:
        """``smoothing`` overrides the filter parameters; by default they come from ``options``."""
        options = options or TrackOptions()
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        if min(options.redetect_interval, options.search_interval, options.max_missed) < 1:
            raise ValueError("redetect_interval, search_interval and max_missed must be >= 1")
        self.analyser = analyser
        self.options = options
        self.fps = float(fps)
        self.smoothing = smoothing or OneEuroParams(
            min_cutoff=options.smoothing_min_cutoff, beta=options.smoothing_beta)
        self._tracks: list[_Track] = []
        self._next_id = 0
        self._last_detect: int | None = None
        self._last_scan: int | None = None
        self._last_looked: Image | None = None
        """The frame of the last scan or detection pass: the scan's border tiles run where it moved."""
        self._tile_cursor = 0
        """The small-face tile the next scan starts with (see ``_next_tiles``)."""
        self._tiles: tuple[tuple[int, ...], list[tuple[float, float, float, float]]] | None = None
        """The analyser's tiles and the frame size they are for."""
        self.detections = 0
        """Full detection passes run so far (for tests and timing reports)."""
        self.scans = 0
        """Cheap new-face scans run so far."""

    def reset(self) -> None:
        self._tracks = []
        self._next_id = 0
        self._last_detect = None
        self._last_scan = None
        self._last_looked = None
        self._tile_cursor = 0
        self.detections = 0
        self.scans = 0

    # -- per frame -----------------------------------------------------------------------------------

    def update(self, image: Image, frame_index: int) -> list[Face]:
        """Faces in this frame, with stable ``track_id`` and smoothed landmarks / kps5 / bbox,
        sorted left to right."""
        live = [t for t in self._tracks if not t.lost]
        refined = self.analyser.refine(image, [t.face.with_(track_id=t.track_id) for t in live])
        by_id = {f.track_id: f for f in refined if f.track_id is not None}
        lost_now = False
        for t in live:
            face = by_id.get(t.track_id)
            if face is None:
                t.lost, lost_now = True, True
            else:
                t.face, t.last_frame = face, frame_index
        self._drop_duplicates()

        if self._detect_due(frame_index, lost_now):
            followed = bool(self._tracks) and not lost_now and not any(t.lost for t in self._tracks)
            if followed and self._rotating_tiles(image):
                # Every face is followed: the periodic pass only looks for newcomers, so it is a scan
                # (plus the short-range whole-image pass, for close-ups); the small-face tiles come a
                # few per scan.
                self._last_detect = frame_index
                self._scan(image, frame_index, whole=True)
            else:
                self._detect(image, frame_index)
        elif self._scan_due(frame_index):
            self._scan(image, frame_index)

        out = []
        for t in self._tracks:
            if t.lost or t.last_frame != frame_index:
                continue
            points = t.filter(_pack(t.face), frame_index / self.fps, scale=max(t.face.size, 1.0))
            out.append(_unpack(t.face, points).with_(track_id=t.track_id))
        return sorted(out, key=lambda f: float(f.center[0]))

    # -- helpers -------------------------------------------------------------------------------------

    def _detect_due(self, frame_index: int, lost_now: bool) -> bool:
        if lost_now or self._last_detect is None:
            return True
        since = frame_index - self._last_detect
        # Nothing followed, or a lost face waiting to be found again: look often, not every frame.
        if not self._tracks or any(t.lost for t in self._tracks):
            return since >= self.options.search_interval
        return since >= self.options.redetect_interval

    def _scan_due(self, frame_index: int) -> bool:
        if self.options.scan_interval < 1 or not hasattr(self.analyser, "scan"):
            return False
        last = max(v for v in (self._last_scan, self._last_detect, -10**9) if v is not None)
        return frame_index - last >= self.options.scan_interval

    def _rotating_tiles(self, image: Image) -> bool:
        """Whether the scans take the analyser's small-face tiles in turn (see the module's notes):
        it has tiles for this frame (none for a frame too large to tile: the full pass stays)."""
        return (self.options.scan_interval >= 1 and self.options.scan_tiles >= 1
                and hasattr(self.analyser, "scan") and bool(self._tile_regions(image)))

    def _tile_regions(self, image: Image) -> list[tuple[float, float, float, float]]:
        """The analyser's small-face tiles for frames of this size (asked once per size)."""
        if not hasattr(self.analyser, "tile_regions"):
            return []
        if self._tiles is None or self._tiles[0] != image.shape[:2]:
            self._tiles = (image.shape[:2], self.analyser.tile_regions(image.shape))
        return self._tiles[1]

    def _scan(self, image: Image, frame_index: int, whole: bool = False) -> None:
        """Start tracks (or wake lost ones) for faces the cheap scan finds that no live track holds;
        ``whole``: with the short-range whole-image pass too."""
        self._last_scan = frame_index
        self.scans += 1
        known = [t.face for t in self._tracks if not t.lost]
        extra: dict[str, object] = {}
        if self._rotating_tiles(image):
            extra = {"tiles": self._next_tiles(image), "short": whole}
        found = self.analyser.scan(image, known, previous=self._last_looked, **extra)  # type: ignore[attr-defined]
        self._last_looked = image
        if found:
            self._adopt(found, frame_index, count_misses=False)

    def _next_tiles(self, image: Image) -> list[tuple[float, float, float, float]]:
        """The small-face tiles this scan looks at: the next ``scan_tiles`` in turn."""
        regions = self._tile_regions(image)
        if not regions:
            return []
        start = self._tile_cursor % len(regions)
        self._tile_cursor = start + self.options.scan_tiles
        count = min(self.options.scan_tiles, len(regions))
        return [regions[(start + i) % len(regions)] for i in range(count)]

    def _detect(self, image: Image, frame_index: int) -> None:
        self._last_detect = frame_index
        self._last_looked = image
        self.detections += 1
        self._adopt(self.analyser.detect(image), frame_index, count_misses=True)

    def _adopt(self, found: list[Face], frame_index: int, count_misses: bool) -> None:
        """Match ``found`` faces to tracks (IoU, greedy); wake lost tracks that match, start new ones
        for the rest. A full detection pass also counts a miss against every track it did not see."""
        # Live tracks are matched on their refined box of this frame, lost ones on their last box.
        boxes = np.stack([t.face.bbox for t in self._tracks]) if self._tracks else np.zeros((0, 4))
        dboxes = np.stack([f.bbox for f in found]) if found else np.zeros((0, 4))
        overlap = iou_matrix(boxes, dboxes)
        matched_tracks: set[int] = set()
        matched_dets: set[int] = set()
        # Greedy matching, best overlap first (a handful of faces: no need for the Hungarian method).
        for flat in np.argsort(-overlap, axis=None):
            ti, di = (int(v) for v in np.unravel_index(int(flat), overlap.shape))
            if overlap[ti, di] < MATCH_IOU:
                break
            if ti in matched_tracks or di in matched_dets:
                continue
            matched_tracks.add(ti)
            matched_dets.add(di)
            t = self._tracks[ti]
            t.missed = 0
            if t.lost:
                # Found again: continue the id, restart the filter (the face may have jumped).
                t.lost = False
                t.face, t.last_frame = found[di].with_(track_id=t.track_id), frame_index
                t.filter.reset()
        if count_misses:
            for ti, t in enumerate(self._tracks):
                if ti not in matched_tracks:
                    t.missed += 1
        kept = [t for t in self._tracks if t.missed < self.options.max_missed]
        self._tracks = kept
        for di, face in enumerate(found):
            if di not in matched_dets:
                self._tracks.append(_Track(self._next_id, face.with_(track_id=self._next_id), frame_index,
                                           OneEuroFilter(self.smoothing)))
                self._next_id += 1

    def _drop_duplicates(self) -> None:
        """Two tracks refined onto the same face (e.g. after crossing): keep the older id."""
        live = [t for t in self._tracks if not t.lost]
        if len(live) < 2:
            return
        overlap = iou_matrix(np.stack([t.face.bbox for t in live]), np.stack([t.face.bbox for t in live]))
        drop: set[int] = set()
        for i in range(len(live)):
            for j in range(i + 1, len(live)):
                if overlap[i, j] >= DUPLICATE_IOU and live[i].track_id not in drop:
                    drop.add(max(live[i].track_id, live[j].track_id))
        self._tracks = [t for t in self._tracks if t.track_id not in drop]


__all__ = ["FaceTracker"]
