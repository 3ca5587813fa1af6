"""Face tracker: stable ids, detection only when due, smoothing without lag.

Two analysers: a scripted fake (exact control over what is detected and lost) and the real
MeshAnalyser on synthetic clips made by moving a photo across a canvas.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.track import FaceTracker
from masquerade.config import TrackOptions
from masquerade.geometry.smoothing import OneEuroParams
from masquerade.types import Face, Image

NO_SMOOTHING = OneEuroParams(min_cutoff=1e9, beta=0.0, local_beta=0.0)
SMOOTH = TrackOptions(redetect_interval=12, smoothing_min_cutoff=1.0, smoothing_beta=20.0)
"""The tuned filter (geometry.smoothing's defaults), given explicitly."""
BLANK = np.zeros((8, 8, 3), np.uint8)
TEMPLATE = np.random.default_rng(0).uniform(-0.5, 0.5, (468, 2))


def _face(cx: float, cy: float, size: float, noise: float = 0.0, seed: int = 0) -> Face:
    xy = np.array([cx, cy]) + TEMPLATE * size
    if noise:
        xy = xy + np.random.default_rng(seed).normal(0, noise, xy.shape)
    lm = np.c_[xy, np.zeros(468)]
    bbox = np.r_[xy.min(axis=0), xy.max(axis=0)]
    return Face(bbox=bbox, kps5=xy[:5], landmarks=lm)


class FakeAnalyser:
    """A scripted world: ``world[frame]`` = {name: (cx, cy, size)}. ``refine`` follows each face to the
    nearest true face; ``drop_refine`` / ``miss_detect`` hold (frame, name) pairs to fail on."""

    def __init__(self, world: list[dict[str, tuple[float, float, float]]], noise: float = 0.0,
                 drop_refine: Sequence[tuple[int, str]] = (), miss_detect: Sequence[tuple[int, str]] = ()):
        self.world, self.noise = world, noise
        self.drop_refine, self.miss_detect = set(drop_refine), set(miss_detect)
        self.frame = 0
        self.detect_frames: list[int] = []

    def _true(self, name: str) -> Face:
        cx, cy, size = self.world[self.frame][name]
        return _face(cx, cy, size, self.noise, seed=self.frame * 100 + hash(name) % 100)

    def detect(self, image: Image) -> list[Face]:
        self.detect_frames.append(self.frame)
        names = [n for n in self.world[self.frame] if (self.frame, n) not in self.miss_detect]
        return [self._true(n) for n in names]

    def refine(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        out = []
        for face in faces:
            here = {n: np.hypot(cx - face.center[0], cy - face.center[1])
                    for n, (cx, cy, _) in self.world[self.frame].items()}
            near = [n for n, d in here.items() if d < face.size and (self.frame, n) not in self.drop_refine]
            if near:
                out.append(self._true(min(near, key=here.__getitem__)).with_(track_id=face.track_id))
        return out


def _run(tracker: FaceTracker, analyser: FakeAnalyser) -> list[list[Face]]:
    out = []
    for i in range(len(analyser.world)):
        analyser.frame = i
        out.append(tracker.update(BLANK, i))
    return out


def _ids(frame: list[Face]) -> list[int | None]:
    return [f.track_id for f in frame]


def test_ids_are_stable_and_detection_runs_every_interval() -> None:
    world = [{"a": (100 + 3 * i, 100, 80), "b": (400 - 3 * i, 120, 90)} for i in range(30)]
    analyser = FakeAnalyser(world)
    out = _run(FaceTracker(analyser, TrackOptions(redetect_interval=10)), analyser)
    assert all(_ids(f) == [0, 1] for f in out[:25])  # left to right: a then b until they cross
    assert analyser.detect_frames == [0, 10, 20]


def test_a_new_face_is_picked_up_at_the_next_detection() -> None:
    world = [{"a": (100, 100, 80)} | ({"b": (400, 100, 80)} if i >= 5 else {}) for i in range(15)]
    analyser = FakeAnalyser(world)
    out = _run(FaceTracker(analyser, TrackOptions(redetect_interval=8)), analyser)
    assert _ids(out[7]) == [0] and _ids(out[8]) == [0, 1] and _ids(out[14]) == [0, 1]


def test_a_face_lost_by_refine_is_found_again_with_its_id() -> None:
    world = [{"a": (100, 100, 80), "b": (400, 100, 80)} for _ in range(10)]
    analyser = FakeAnalyser(world, drop_refine=[(4, "b")])
    out = _run(FaceTracker(analyser, TrackOptions(redetect_interval=12)), analyser)
    assert all(_ids(f) == [0, 1] for f in out)
    assert analyser.detect_frames == [0, 4]  # once more, on the frame refine lost it


def test_a_face_that_leaves_is_dropped_and_a_newcomer_gets_a_new_id() -> None:
    world = [{"a": (100, 100, 80)} if i < 5 else {} for i in range(10)]
    world += [{"a": (500, 300, 80)} for _ in range(3)]
    analyser = FakeAnalyser(world)
    tracker = FaceTracker(analyser, TrackOptions(redetect_interval=12, max_missed=2))
    out = _run(tracker, analyser)
    assert all(_ids(f) == [0] for f in out[:5])
    assert all(f == [] for f in out[5:11])
    assert _ids(out[11]) == [1]  # the newcomer of frame 10, found by the next search pass
    # With nothing tracked the detector looks every search_interval frames; then back to the interval.
    assert analyser.detect_frames == [0, 5, 8, 11]


def test_a_track_the_detector_keeps_missing_is_dropped() -> None:
    world = [{"a": (100, 100, 80), "b": (400, 100, 80)} for _ in range(13)]
    analyser = FakeAnalyser(world, miss_detect=[(4, "b"), (8, "b")])
    out = _run(FaceTracker(analyser, TrackOptions(redetect_interval=4, max_missed=2)), analyser)
    assert _ids(out[7]) == [0, 1]
    assert _ids(out[8]) == [0]  # missed on two passes in a row: dropped ...
    assert _ids(out[12]) == [0, 2]  # ... and found again by the next pass as a new track


def test_two_tracks_on_one_face_merge_into_the_older() -> None:
    world = [{"a": (100, 100, 100), "b": (160, 100, 100)}] + [{"a": (100, 100, 100)} for _ in range(3)]
    analyser = FakeAnalyser(world)
    out = _run(FaceTracker(analyser), analyser)
    assert _ids(out[0]) == [0, 1]
    assert all(_ids(f) == [0] for f in out[1:])


def test_smoothing_reduces_jitter_of_a_still_face() -> None:
    world = [{"a": (300, 200, 150)} for _ in range(60)]
    jitter = {}
    for name, params in (("raw", NO_SMOOTHING), ("smooth", None)):
        analyser = FakeAnalyser(world, noise=1.0)
        out = _run(FaceTracker(analyser, SMOOTH, smoothing=params), analyser)
        lm = np.array([f[0].landmarks for f in out[10:]])
        jitter[name] = float(lm[..., :2].std(axis=0).mean())
    assert jitter["raw"] == pytest.approx(1.0, abs=0.1)
    assert jitter["smooth"] < 0.6 * jitter["raw"]


def test_reset_starts_over() -> None:
    world = [{"a": (100, 100, 80)} for _ in range(3)]
    analyser = FakeAnalyser(world)
    tracker = FaceTracker(analyser)
    _run(tracker, analyser)
    tracker.reset()
    analyser.detect_frames.clear()
    assert _ids(_run(tracker, analyser)[0]) == [0]
    assert analyser.detect_frames == [0]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError):
        FaceTracker(FakeAnalyser([]), fps=0)
    with pytest.raises(ValueError):
        FaceTracker(FakeAnalyser([]), TrackOptions(redetect_interval=0))


# -- the real analyser on synthetic clips ------------------------------------------------------------


@pytest.fixture(scope="module")
def analyser() -> MeshAnalyser:
    return MeshAnalyser()


@pytest.fixture(scope="module")
def small_obama(obama) -> np.ndarray:
    return cv2.resize(obama, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA)  # face about 75 px


def _frame(photo: np.ndarray, x: int, y: int = 60, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    canvas = np.full((480, 800, 3), 110, np.uint8)
    h, w = photo.shape[:2]
    canvas[y:y + h, x:x + w] = photo
    if noise:
        rng = np.random.default_rng(seed)
        canvas = np.clip(canvas + rng.normal(0, noise, canvas.shape), 0, 255).astype(np.uint8)
    return canvas


def _track(analyser: MeshAnalyser, frames: list[np.ndarray], smoothing: OneEuroParams | None):
    tracker = FaceTracker(analyser, SMOOTH, smoothing=smoothing)
    out = [tracker.update(f, i) for i, f in enumerate(frames)]
    return out, tracker


def test_real_mesh_still_face_jitter_is_reduced(analyser, small_obama) -> None:
    frames = [_frame(small_obama, 200, noise=8.0, seed=i) for i in range(30)]
    jitter = {}
    for name, params in (("raw", NO_SMOOTHING), ("smooth", None)):
        out, tracker = _track(analyser, frames, params)
        assert all(_ids(f) == [0] for f in out)
        # One full pass; the periodic ones at frames 12 and 24 are scans (every face is followed).
        assert tracker.detections == 1 and tracker.scans == (len(frames) - 1) // SMOOTH.scan_interval
        lm = np.array([f[0].landmarks[:, :2] for f in out[5:]])
        jitter[name] = float(lm.std(axis=0).mean())
    assert jitter["raw"] > 0.05  # the noise does move the mesh ...
    assert jitter["smooth"] < 0.7 * jitter["raw"]  # ... and smoothing takes out a good part of it


def test_real_mesh_fast_motion_has_little_lag(analyser, small_obama) -> None:
    step = 12  # px per frame on a ~75 px face: about 4 face widths per second at 25 fps
    frames = [_frame(small_obama, 20 + step * i) for i in range(40)]
    raw, _ = _track(analyser, frames, NO_SMOOTHING)
    smooth, _ = _track(analyser, frames, None)
    assert all(_ids(f) == [0] for f in smooth)
    lag = [float((r[0].landmarks[:, 0] - s[0].landmarks[:, 0]).mean())
           for r, s in zip(raw, smooth, strict=True)]
    assert max(abs(v) for v in lag[8:]) < 0.15 * step  # steady state: a fraction of one frame's motion
    assert max(abs(v) for v in lag) < step  # even when the motion starts


class ScanningAnalyser(FakeAnalyser):
    """The fake world with the analyser's cheap new-face ``scan`` (faces no known one overlaps)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scan_frames: list[int] = []

    def scan(self, image: Image, known: Sequence[Face], previous: Image | None = None) -> list[Face]:
        self.scan_frames.append(self.frame)
        found = []
        for face in self.detect(image):
            if all(np.hypot(*(face.center - k.center)) > 0.5 * face.size for k in known):
                found.append(face)
        self.detect_frames.pop()  # a scan is not a detection pass
        return found


def test_a_newcomer_is_picked_up_by_the_scan_within_its_interval() -> None:
    world = [{"a": (100, 100, 80)} | ({"b": (400, 100, 80)} if i >= 5 else {}) for i in range(15)]
    analyser = ScanningAnalyser(world)
    tracker = FaceTracker(analyser, TrackOptions(redetect_interval=12, scan_interval=2))
    out = _run(tracker, analyser)
    # Scans run on the frames between detection passes; "b" arrives at 5 and is in from 6 on
    # (it would wait until frame 12 for the next detection pass without them).
    assert analyser.detect_frames == [0, 12]
    assert analyser.scan_frames == [2, 4, 6, 8, 10, 14]
    assert _ids(out[5]) == [0] and all(_ids(f) == [0, 1] for f in out[6:])
    assert tracker.scans == 6


def test_the_scan_wakes_a_lost_track_with_its_id_and_counts_no_misses() -> None:
    world = [{"a": (100, 100, 80), "b": (400, 100, 80)} for _ in range(12)]
    # "b" turns away (refine loses it, the detector misses it) and back at frame 7.
    lost = [(i, "b") for i in range(3, 7)]
    analyser = ScanningAnalyser(world, drop_refine=lost, miss_detect=lost)
    tracker = FaceTracker(analyser, TrackOptions(redetect_interval=12, search_interval=3, scan_interval=1,
                                                 max_missed=5))
    out = _run(tracker, analyser)
    assert all(_ids(f) == [0] for f in out[3:7])
    assert all(_ids(f) == [0, 1] for f in out[7:])  # back within one frame, same id


def test_no_scan_without_the_analysers_support_or_when_off() -> None:
    world = [{"a": (100, 100, 80)} for _ in range(6)]
    plain = FakeAnalyser(world)
    assert _run(FaceTracker(plain, TrackOptions(scan_interval=1)), plain)[-1][0].track_id == 0
    analyser = ScanningAnalyser(world)
    _run(FaceTracker(analyser, TrackOptions(scan_interval=0)), analyser)
    assert analyser.scan_frames == []


class TilingAnalyser(ScanningAnalyser):
    """The scanning fake with small-face tiles: face "small" is seen only through the tile that holds
    it (by a scan given that tile, or by a detection pass, which runs every tile)."""

    REGIONS: tuple[tuple[float, float, float, float], ...] = tuple(
        (x, 0.0, x + 100.0, 100.0) for x in range(0, 700, 100))  # 7 tiles in a row

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.scan_tiles: list[list[int]] = []
        self.short_scans: list[int] = []

    def tile_regions(self, shape: tuple[int, ...]) -> list[tuple[float, float, float, float]]:
        return list(self.REGIONS)

    def _visible(self, tiles: Sequence[tuple[float, ...]]) -> list[Face]:
        faces = [self._true(name) for name in self.world[self.frame]]
        return [f for f in faces if f.size > 50 or any(r[0] <= f.center[0] < r[2] for r in tiles)]

    def detect(self, image: Image) -> list[Face]:
        self.detect_frames.append(self.frame)
        return self._visible(self.REGIONS)

    def scan(self, image: Image, known: Sequence[Face], previous: Image | None = None,
             tiles: Sequence[tuple[float, ...]] = (), short: bool = False) -> list[Face]:
        self.scan_frames.append(self.frame)
        self.scan_tiles.append([self.REGIONS.index(r) for r in tiles])
        if short:
            self.short_scans.append(self.frame)
        return [f for f in self._visible(tiles)
                if all(np.hypot(*(f.center - k.center)) > 0.5 * f.size for k in known)]


def test_scans_take_the_small_face_tiles_in_turn_instead_of_the_periodic_pass() -> None:
    # "small" (only tiles see it) appears at frame 3 in the 6th tile (x 500..600).
    world = [{"a": (150, 50, 80)} | ({"small": (550, 50, 30)} if i >= 3 else {}) for i in range(26)]
    analyser = TilingAnalyser(world)
    tracker = FaceTracker(analyser, TrackOptions(redetect_interval=12, scan_interval=2, scan_tiles=3))
    out = _run(tracker, analyser)
    # One full pass (nothing followed yet); then scans every other frame, three tiles each, in turn,
    # and the periodic passes at 12 and 24 are scans with the short-range whole-image pass.
    assert analyser.detect_frames == [0]
    assert analyser.scan_frames == list(range(2, 26, 2))
    assert analyser.short_scans == [12, 24]
    assert analyser.scan_tiles[:4] == [[0, 1, 2], [3, 4, 5], [6, 0, 1], [2, 3, 4]]
    seen = [i for i, faces in enumerate(out) if len(faces) == 2]
    assert seen == list(range(4, 26))  # the scan at frame 4 holds tile 5; kept from then on


class UntiledAnalyser(TilingAnalyser):
    """No tiles for these frames (the mesh analyser's answer for a frame too large to tile)."""

    def tile_regions(self, shape: tuple[int, ...]) -> list[tuple[float, float, float, float]]:
        return []


@pytest.mark.parametrize(("analyser_type", "scan_tiles"), [(TilingAnalyser, 0), (UntiledAnalyser, 5)])
def test_without_tiles_to_rotate_the_full_detection_pass_stays(analyser_type, scan_tiles) -> None:
    world = [{"a": (150, 50, 80)} for _ in range(14)]
    analyser = analyser_type(world)
    options = TrackOptions(redetect_interval=12, scan_interval=2, scan_tiles=scan_tiles)
    _run(FaceTracker(analyser, options), analyser)
    assert analyser.detect_frames == [0, 12] and analyser.short_scans == []
    assert analyser.scan_frames == [2, 4, 6, 8, 10] and all(t == [] for t in analyser.scan_tiles)


def _head(photo: Image, face: Face, width: int = 40) -> Image:
    """A square crop of ``photo`` around ``face``, twice its width, scaled so the face is ``width``
    px wide (small: the scan's whole-image pass does not see it, only tiles do)."""
    scale = width / face.width
    image = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    cx, cy = (round(float(v) * scale) for v in face.center)
    return image[cy - width:cy + width, cx - width:cx + width]


def _coming_in(newcomer: Image, stayer: Image, frames: int, step: float) -> list[Image]:
    """Two heads on a plain 640x360 frame: one stays at the right, one slides in across the left
    border, ``step`` px a frame."""
    side = len(newcomer)
    out = []
    for i in range(frames):
        frame = np.full((360, 640, 3), 150, np.uint8)
        frame[180 - side // 2:180 + side - side // 2, 440:440 + side] = stayer
        x0 = round(-side + step * i)  # the sliding crop's left edge
        if x0 + side > 0:
            frame[180 - side // 2:180 + side - side // 2, max(0, x0):x0 + side] = newcomer[:, max(0, -x0):]
        out.append(frame)
    return out


def test_a_face_coming_in_across_the_border_is_picked_up_within_two_frames(analyser, obama, biden) -> None:
    heads = [_head(photo, analyser.detect(photo)[0]) for photo in (obama, biden)]
    frames = _coming_in(*heads, frames=16, step=4.0)
    # The first frame where a full detection pass (tiles and all) finds the newcomer.
    visible = next(i for i, f in enumerate(frames) if any(d.center[0] < 320 for d in analyser.detect(f)))
    # The other face is tracked from frame 0, so the next full pass is only at frame 12.
    tracker = FaceTracker(analyser, TrackOptions(redetect_interval=12, scan_interval=2))
    tracked = [any(f.center[0] < 320 for f in tracker.update(frame, i)) for i, frame in enumerate(frames)]
    first = tracked.index(True)
    assert 0 < visible < 11
    assert first <= visible + 1  # the scan's border tiles, not the pass at frame 12
    assert all(tracked[first:])


def test_a_small_face_appearing_mid_frame_is_found_by_the_rotating_tiles(analyser, obama, biden) -> None:
    """A 40-px face that appears in the middle of a 720p frame (too small for the scan's whole-image
    pass) is found within one round of the small-face tiles, without any full detection pass."""
    small, stayer = _head(obama, analyser.detect(obama)[0], 40), _head(biden, analyser.detect(biden)[0], 110)
    options = TrackOptions()
    cycle = options.scan_interval * -(-len(analyser.tile_regions((720, 1280))) // options.scan_tiles)
    frames = []
    for i in range(3 + cycle + 3):
        frame = np.full((720, 1280, 3), 150, np.uint8)
        frame[300:300 + len(stayer), 1000:1000 + len(stayer)] = stayer
        if i >= 3:
            frame[340:340 + len(small), 600:600 + len(small)] = small
        frames.append(frame)
    stayer_face = analyser.detect(frames[0])
    assert len(stayer_face) == 1 and analyser.scan(frames[3], stayer_face) == []  # the scan alone misses it
    tracker = FaceTracker(analyser, options)
    found = [any(f.center[0] < 800 for f in tracker.update(frame, i)) for i, frame in enumerate(frames)]
    first = found.index(True)
    assert 3 < first <= 3 + cycle and all(found[first:])
    assert tracker.detections == 1  # the first frame's pass only
