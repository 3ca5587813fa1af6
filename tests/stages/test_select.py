"""Face selection: all / one / index, and reference matching with per-track decisions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.recognize import DlibRecognizer
from masquerade._stages.select import FaceSelector, reference_embedding
from masquerade.config import SelectOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.types import Face, Image

BLANK = np.zeros((8, 8, 3), np.uint8)
REF = np.array([-1.0, -1.0], np.float32)


def _face(x: float, size: float, track_id: int | None = None) -> Face:
    return Face(bbox=[x - size / 2, 100 - size / 2, x + size / 2, 100 + size / 2], kps5=np.zeros((5, 2)),
                track_id=track_id)


class ScriptedRecognizer:
    """Distances to the reference scripted per track: the k-th embedding of track t is at
    ``distances[t][k]`` (the last value repeats)."""

    name = "scripted"
    default_threshold = 0.5

    def __init__(self, distances: dict[int, list[float]]) -> None:
        self.distances = distances
        self.calls: Counter[int] = Counter()

    def embed(self, image: Image, face: Face) -> np.ndarray:
        assert face.track_id is not None
        k = self.calls[face.track_id]
        self.calls[face.track_id] += 1
        return np.array([face.track_id, k], np.float32)

    def embed_faces(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        return [f.with_(embedding=self.embed(image, f)) for f in faces]

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        assert np.array_equal(b, REF)
        seq = self.distances[int(a[0])]
        return seq[min(int(a[1]), len(seq) - 1)]


def _select(selector: FaceSelector, frames: list[list[Face]]) -> list[list[int | None]]:
    return [[f.track_id for f in selector(BLANK, faces)] for faces in frames]


# -- all, one, index ---------------------------------------------------------------------------------


def test_all_one_and_index() -> None:
    faces = [_face(300, 50, 0), _face(100, 80, 1), _face(200, 60, 2)]
    assert FaceSelector(SelectOptions(mode="all"), None)(BLANK, faces) == faces
    assert FaceSelector(SelectOptions(mode="one"), None)(BLANK, faces) == [faces[1]]
    # index counts from the left whatever the order faces come in.
    picks = [FaceSelector(SelectOptions(mode="index", face_index=i), None)(BLANK, faces) for i in range(4)]
    assert picks == [[faces[1]], [faces[2]], [faces[0]], []]
    for mode in ("all", "one", "index"):
        assert FaceSelector(SelectOptions(mode=mode), None)(BLANK, []) == []


def test_one_keeps_its_track_while_the_sizes_are_close() -> None:
    sizes = [(80, 78), (79, 81), (80, 82), (78, 80), (70, 100), (80, 81)]
    frames = [[_face(100, a, 0), _face(300, b, 1)] for a, b in sizes]
    assert _select(FaceSelector(SelectOptions(mode="one"), None), frames) == [[0], [0], [0], [0], [1], [1]]


def test_bad_selection_options_are_refused() -> None:
    with pytest.raises(ValueError):
        FaceSelector(SelectOptions(mode="all"), None, recheck_interval=0)
    with pytest.raises(UsageError):
        FaceSelector(SelectOptions(mode="reference"), None)
    with pytest.raises(UsageError):
        FaceSelector(SelectOptions(mode="index", face_index=-1), None)


# -- reference, scripted -----------------------------------------------------------------------------


def test_decisions_are_cached_per_track_and_rechecked_every_interval() -> None:
    # Track 0 sits near the threshold (0.45 against 0.5: no clear vote), so it is rechecked every
    # interval. Track 1 is clearly someone else and looks the same all along: a steady track, rechecked
    # only every steady interval.
    rec = ScriptedRecognizer({0: [0.45], 1: [0.8]})
    selector = FaceSelector(SelectOptions(), rec, REF, recheck_interval=5, steady_interval=15)
    frames = [[_face(100, 80, 0), _face(300, 80, 1)] for _ in range(30)]
    assert _select(selector, frames) == [[0]] * 30
    # Frames 0, 1, 2, 4 and 8 of a new track, then track 0 every 5 (13, 18, 23, 28), track 1 on 23 only.
    assert rec.calls == {0: 9, 1: 6}
    assert selector.embeddings == 15


def test_without_adopting_a_run_with_no_person_selects_nobody() -> None:
    # A segment of a video whose person was looked for from the start and not found: no face is the
    # person, though a segment on its own would adopt the first one it sees.
    rec = ScriptedRecognizer({0: [0.0], 1: [0.0]})
    frames = [[_face(100, 80, 0), _face(300, 60, 1)] for _ in range(3)]
    assert _select(FaceSelector(SelectOptions(), rec, adopt=False), frames) == [[], [], []]
    assert rec.calls == {}


def test_a_track_near_the_threshold_does_not_flicker() -> None:
    rec = ScriptedRecognizer({0: [0.47, 0.53, 0.49, 0.54, 0.46, 0.52, 0.53, 0.48],
                              1: [0.53, 0.47, 0.51, 0.46]})
    selector = FaceSelector(SelectOptions(), rec, REF, recheck_interval=1)
    out = _select(selector, [[_face(100, 80, 0), _face(300, 80, 1)] for _ in range(8)])
    assert out == [[0]] * 8


def test_a_wrong_first_decision_is_corrected_by_later_checks() -> None:
    # E.g. the first frame of a track was blurred: far at first, then clearly the person.
    rec = ScriptedRecognizer({0: [0.9, 0.2]})
    selector = FaceSelector(SelectOptions(), rec, REF, recheck_interval=1)
    out = _select(selector, [[_face(100, 80, 0)] for _ in range(6)])
    assert out[0] == [] and out[-1] == [0]
    assert out.index([0]) == 2  # once two of the three votes say so


class IdRecognizer(ScriptedRecognizer):
    """Each track is its own person: embedding = (track id, k), distance = difference of ids."""

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(abs(a[0] - b[0]))


def test_without_a_reference_the_first_largest_face_is_adopted() -> None:
    selector = FaceSelector(SelectOptions(similarity=0.5), IdRecognizer({}))
    two = [_face(100, 60, 1), _face(300, 90, 2)]
    frames = [[], two, [*two, _face(500, 99, 3)]]
    assert _select(selector, frames) == [[], [2], [2]]
    assert selector.reference is not None and selector.reference[0] == 2
    selector.reset()
    assert selector.reference is None


# -- reference, real photos --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def recognizer() -> DlibRecognizer:
    return DlibRecognizer()


@pytest.fixture(scope="module")
def analyser() -> MeshAnalyser:
    return MeshAnalyser()


def _side_by_side(left: np.ndarray, right: np.ndarray, left_h: int, right_h: int) -> np.ndarray:
    def fit(img: np.ndarray, h: int) -> np.ndarray:
        return cv2.resize(img, (round(img.shape[1] * h / img.shape[0]), h), interpolation=cv2.INTER_AREA)

    a, b = fit(left, left_h), fit(right, right_h)
    canvas = np.full((max(left_h, right_h), a.shape[1] + b.shape[1], 3), 120, np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1]:] = b
    return canvas


def test_reference_photo_selects_only_that_person(obama, obama2, biden, analyser, recognizer) -> None:
    group = _side_by_side(obama, biden, 600, 600)
    faces = analyser.detect(group)
    assert len(faces) == 2
    ref = reference_embedding(obama2, analyser, recognizer)
    chosen = FaceSelector(SelectOptions(), recognizer, ref)(group, faces)
    assert len(chosen) == 1 and chosen[0].center[0] < group.shape[1] / 2 - 100  # obama is on the left

    # Same picture as video frames with track ids: one decision per track, stable, embedded once.
    selector = FaceSelector(SelectOptions(), recognizer, ref, recheck_interval=25)
    tracked = [f.with_(track_id=i) for i, f in enumerate(faces)]
    out = [[f.track_id for f in selector(group, tracked)] for _ in range(10)]
    assert out == [[0]] * 10
    assert selector.embeddings == 2 * 5  # frames 0, 1, 2, 4 and 8 of each track


def test_without_a_reference_photo_the_largest_face_is_the_person(obama, biden, analyser, recognizer) -> None:
    group = _side_by_side(obama, biden, 400, 1200)  # biden's face is the larger one
    faces = analyser.detect(group)
    assert len(faces) == 2
    selector = FaceSelector(SelectOptions(), recognizer)
    chosen = selector(group, faces)
    assert len(chosen) == 1 and chosen[0].center[0] > faces[0].center[0]
    assert selector.reference is not None
    assert selector.embeddings == 2  # the adopted face is not embedded twice


def test_a_reference_photo_without_a_face_is_refused(analyser, recognizer) -> None:
    with pytest.raises(NoSourceFaceError):
        reference_embedding(np.full((200, 200, 3), 127, np.uint8), analyser, recognizer)


def test_tracked_video_keeps_one_decision_per_person(obama, obama2, biden, analyser, recognizer) -> None:
    from masquerade._stages.track import FaceTracker
    from masquerade.config import TrackOptions

    pair = _side_by_side(obama, biden, 300, 300)
    h, w = pair.shape[:2]
    tracker = FaceTracker(analyser, TrackOptions(redetect_interval=12, smoothing_beta=80.0))
    selector = FaceSelector(SelectOptions(), recognizer, reference_embedding(obama2, analyser, recognizer),
                            recheck_interval=10)
    for i in range(24):  # the pair drifts right and down, 4 px a frame
        frame = np.full((h + 120, w + 120, 3), 120, np.uint8)
        x = y = 4 * (i % 30)
        frame[y:y + h, x:x + w] = pair
        faces = tracker.update(frame, i)
        chosen = selector(frame, faces)
        assert [f.track_id for f in faces] == [0, 1]
        assert [f.track_id for f in chosen] == [0]  # obama, on the left, every frame
    # Each track on frames 0, 1, 2, 4 and 8 only: clear votes and an unchanged look make both steady,
    # so the recheck due on frame 18 (recheck_interval=10) waits for the steady interval (48 frames).
    assert selector.embeddings == 2 * 5
