"""Identity per track: clustering maths, the --map mapper's votes and hysteresis, crossings and cuts, and
the tracklet collector, on synthetic frames whose "people" a colour recognizer tells apart."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import pytest

from masquerade._stages.cluster import agglomerate
from masquerade._stages.identity import IdentityMapper, TrackEvents, in_contact
from masquerade._stages.tracklets import TrackletCollector, group_people, summarise
from masquerade.types import Face, Image

SIZE = 64
COLOURS = {"a": (200, 60, 60), "b": (60, 200, 60), "c": (60, 60, 200)}
PATTERNS = {"a": "rows", "b": "columns", "c": "checks"}


def _paint(image: Image, person: str, x: int, y: int, colour: str | None = None) -> None:
    """A face-sized patch: ``person``'s pattern (what the look-jump check sees) in ``colour``'s colour
    (what the recognizer sees; normally the person's own)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    mask = {"rows": yy // 8, "columns": xx // 8, "checks": yy // 8 + xx // 8}[PATTERNS[person]] % 2
    tone = np.asarray(COLOURS[colour or person], np.float32)
    image[y:y + SIZE, x:x + SIZE] = (tone * (0.6 + 0.4 * mask[..., None])).astype(np.uint8)


def frame(faces: Sequence[tuple[str, int, int, int | None]], looks: dict[int, str] | None = None,
          ) -> tuple[Image, list[Face]]:
    """A frame with ``(person, x, y, track id)`` patches; ``looks`` repaints face i in another colour."""
    image = np.full((240, 400, 3), 128, np.uint8)
    out = []
    for i, (person, x, y, track) in enumerate(faces):
        _paint(image, person, x, y, (looks or {}).get(i))
        box = np.float32([x, y, x + SIZE, y + SIZE])
        out.append(Face(bbox=box, kps5=np.zeros((5, 2)), track_id=track))
    return image, out


class ColourRecognizer:
    """Embedding: the face patch's mean colour, normalised. One person per colour."""

    name = "colour"
    default_threshold = 0.3

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, image: Image, face: Face) -> np.ndarray:
        self.calls += 1
        x1, y1, x2, y2 = face.bbox.astype(int)
        mean = image[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)

    def embed_faces(self, image: Image, faces: Sequence[Face]) -> list[Face]:
        return [f.with_(embedding=self.embed(image, f)) for f in faces]

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def reference(person: str) -> np.ndarray:
    image, faces = frame([(person, 10, 10, None)])
    return ColourRecognizer().embed(image, faces[0])


def run(mapper: IdentityMapper, frames: list[tuple[Image, list[Face]]]) -> list[dict[int, int | None]]:
    """Per frame, track id -> mapped person."""
    return [{f.track_id: f.person for f in mapper(image, faces)} for image, faces in frames]


# -- clustering --------------------------------------------------------------------------------------


def test_agglomerate_finds_the_groups_without_being_told_how_many() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 16))
    order = [2, 0, 0, 3, 1, 2, 3, 0, 1, 1, 2]
    points = np.stack([centres[c] + rng.normal(scale=0.05, size=16) for c in order])
    d = np.linalg.norm(points[:, None] - points[None], axis=-1)
    labels = agglomerate(d, threshold=1.0)
    # One label per true group, numbered in order of first appearance.
    assert labels == [0, 1, 1, 2, 3, 0, 2, 1, 3, 3, 0]
    assert agglomerate(d, threshold=1.0) == labels  # deterministic
    assert len(set(agglomerate(d, threshold=100.0))) == 1
    assert agglomerate(d, threshold=0.0) == list(range(len(order)))
    assert agglomerate(np.zeros((0, 0)), 0.5) == []


def test_agglomerate_never_joins_items_that_cannot_link() -> None:
    d = np.array([[0.0, 0.1, 0.2], [0.1, 0.0, 0.15], [0.2, 0.15, 0.0]])
    assert agglomerate(d, 0.5) == [0, 0, 0]
    blocked = np.zeros((3, 3), bool)
    blocked[0, 1] = True  # seen in the same frame: two people
    labels = agglomerate(d, 0.5, blocked)
    assert labels[0] != labels[1] and labels[2] in (labels[0], labels[1])
    with pytest.raises(ValueError):
        agglomerate(np.zeros((2, 3)), 0.5)


# -- the --map mapper ---------------------------------------------------------------------------------


def test_each_track_gets_its_person_and_strangers_get_none() -> None:
    mapper = IdentityMapper(ColourRecognizer(), [reference("a"), reference("b")], 0.3)
    frames = [frame([("b", 20, 50, 0), ("c", 150, 50, 1), ("a", 280, 50, 2)]) for _ in range(3)]
    assert run(mapper, frames) == [{0: 1, 1: None, 2: 0}] * 3
    # A still image: each face alone.
    image, faces = frame([("a", 20, 50, None), ("b", 150, 50, None)])
    assert [f.person for f in mapper(image, faces)] == [0, 1]


def test_decisions_are_per_track_one_odd_frame_does_not_flip_it() -> None:
    recognizer = ColourRecognizer()
    mapper = IdentityMapper(recognizer, [reference("a"), reference("b")], 0.3, recheck_interval=1,
                            steady_interval=1)
    frames = [frame([("a", 20 + 2 * i, 50, 0)], looks={0: "b"} if i == 12 else None) for i in range(20)]
    assert run(mapper, frames) == [{0: 0}] * 20
    # Embedded on frames 0, 1, 2, 4 and 8 of the track, then every frame (both intervals 1), frame 12 too.
    assert recognizer.calls == 5 + 11


def _textured(texture: np.ndarray, score: float = 1.0) -> tuple[Image, list[Face]]:
    """Person a's colour over a grey ``texture`` (64 x 64, 0..1) at (100, 50), tracked as 0."""
    image = np.full((240, 400, 3), 128, np.uint8)
    tone = np.asarray(COLOURS["a"], np.float32)
    image[50:50 + SIZE, 100:100 + SIZE] = (tone * (0.6 + 0.4 * texture[..., None])).astype(np.uint8)
    box = np.float32([100, 50, 100 + SIZE, 50 + SIZE])
    return image, [Face(bbox=box, kps5=np.zeros((5, 2)), score=score, track_id=0)]


def test_a_steady_track_is_rechecked_seldom_unless_its_look_or_view_changes() -> None:
    rng = np.random.default_rng(3)
    before, after = (cv2.GaussianBlur(rng.random((SIZE, SIZE)).astype(np.float32), (0, 0), 3) for _ in "ab")
    before, after = ((t - t.min()) / (t.max() - t.min()) for t in (before, after))

    def checks(frames: list[tuple[Image, list[Face]]]) -> list[int]:
        recognizer = ColourRecognizer()
        mapper = IdentityMapper(recognizer, [reference("a"), reference("b")], 0.3)  # intervals 12 and 48
        embedded = []
        for index, (image, faces) in enumerate(frames):
            calls = recognizer.calls
            assert [f.person for f in mapper(image, faces)] == [0]
            if recognizer.calls > calls:
                embedded.append(index)
        return embedded

    # Clear votes, the same look: after the first checks, one every 48 frames instead of every 12.
    assert checks([_textured(before) for _ in range(100)]) == [0, 1, 2, 4, 8, 56]
    # The face slowly changes its look over frames 10-40 (never a cut from one frame to the next): checked
    # at the ordinary interval while it changes (20, 32); the last stretch (32-44) is a small change, so
    # the track is steady again and waits 48 frames from its last check.
    morph = [_textured(before + (after - before) * min(max((i - 10) / 30, 0.0), 1.0)) for i in range(100)]
    assert checks(morph) == [0, 1, 2, 4, 8, 20, 32, 80]
    # The detector's confidence (part of how well a frame shows the face) rises on frame 30: the better
    # view gets a vote at once (the ordinary interval since the last check has passed), then 48 frames.
    assert checks([_textured(before, 0.5 if i < 30 else 1.0) for i in range(100)]) == [0, 1, 2, 4, 8, 30, 78]


def test_a_wrong_first_look_is_corrected_within_a_frame_or_two() -> None:
    mapper = IdentityMapper(ColourRecognizer(), [reference("a"), reference("b")], 0.3)
    frames = [frame([("a", 20, 50, 0)], looks={0: "b"} if i == 0 else None) for i in range(6)]
    out = [m[0] for m in run(mapper, frames)]
    assert out[0] == 1 and out[2:] == [0] * 4


def _crossing(swap_ids: bool) -> list[tuple[Image, list[Face]]]:
    """a walks right, b walks left; they overlap around frame 10. With ``swap_ids`` the tracker hands
    each id to the other face while they overlap (what refine can do when one face hides the other)."""
    frames = []
    for i in range(21):
        xa, xb = 100 + 10 * i, 300 - 10 * i
        ids = (1, 0) if swap_ids and i > 10 else (0, 1)
        frames.append(frame([("a", xa, 50, ids[0]), ("b", xb, 50, ids[1])]))
    return frames


@pytest.mark.parametrize("swap_ids", [False, True])
def test_a_crossing_keeps_each_person_on_their_own_face(swap_ids) -> None:
    recognizer = ColourRecognizer()
    mapper = IdentityMapper(recognizer, [reference("a"), reference("b")], 0.3)
    frames = _crossing(swap_ids)
    touching = [any(in_contact(faces)) for _, faces in frames]
    assert touching.index(True) > 3 and not touching[-1]
    for (image, faces), touches in zip(frames, touching, strict=True):
        tagged = mapper(image, faces)  # faces[0] is always a, faces[1] always b, whatever their ids
        if not touches:
            # Away from the overlap (where one face hides the other), each gets its own source.
            assert [f.person for f in tagged] == [0, 1]


def test_a_cut_to_someone_else_on_the_same_track_is_decided_afresh() -> None:
    mapper = IdentityMapper(ColourRecognizer(), [reference("a"), reference("b")], 0.3)
    frames = [frame([("a" if i < 30 else "b", 100, 50, 0)]) for i in range(40)]
    out = [m[0] for m in run(mapper, frames)]
    assert out == [0] * 30 + [1] * 10  # the jump in the face's look restarts the track's votes at once


def test_track_events_see_cuts_and_partings_but_not_motion() -> None:
    events = TrackEvents()
    steady = [events(*frame([("a", 100 + 3 * i, 50 + i, 0)])) for i in range(5)]
    assert not any(e.cut or e.parted or e.touching for evs in steady for e in evs)
    (cut,) = events(*frame([("b", 115, 55, 0)]))
    assert cut.cut and cut.settling
    (again,) = events(*frame([("c", 115, 55, 0)]))  # the tracker still catching up: the same cut
    assert again.settling and not again.cut
    touching = events(*frame([("b", 115, 55, 0), ("a", 140, 55, 1)]))
    assert all(e.touching for e in touching)
    parted = events(*frame([("b", 100, 55, 0), ("a", 250, 55, 1)]))
    assert all(e.parted and not e.cut for e in parted)


# -- tracklets and people -----------------------------------------------------------------------------


def test_tracklets_split_at_cuts_and_crossings_and_group_into_people() -> None:
    recognizer = ColourRecognizer()
    collector = TrackletCollector(recognizer, fps=10.0)
    script = []
    script += [[("a", 20, 50, 0)]] * 10  # a alone
    script += [[("c", 20, 50, 0)]] * 6  # cut to c at the same place: the tracker goes on
    script += [[("a", 100 + 10 * i, 50, 1), ("b", 300 - 10 * i, 50, 2)] for i in range(21)]  # a, b cross
    for index, faces in enumerate(script):
        image, tracked = frame(faces)
        collector.add(image, index, index / 10.0, tracked)
    tracklets = collector.tracklets()
    assert [t.spans for t in tracklets][:2] == [[[0, 9]], [[10, 15]]]
    groups = group_people(tracklets, recognizer, 0.3)
    people = [{PATTERNS_OF[_colour(t)] for t in group} for group in groups]
    assert sorted(map(sorted, people)) == [["a"], ["b"], ["c"]]
    # Few embeddings: about 5 a second per tracklet, best ones kept.
    assert recognizer.calls <= 2 + len(script) // 2 + len(tracklets)

    found = summarise(groups, target=None, kind="video", frames=len(script), fps=10.0, threshold=0.3,
                      recognizer="colour")
    assert [p.id for p in found.persons] == ["p1", "p2", "p3"]
    assert [p.frames for p in found.persons] == [31, 21, 6]  # a (10 + 21), b, c: by screen time
    assert found.persons[0].appearances[0].first_frame == 0 and len(found.persons[0].appearances) == 2
    assert found.persons[1].screen_time_s == pytest.approx(2.1)
    a = found.persons[0]
    assert a.crop.shape[0] == a.crop.shape[1] > 0 and a.strip and a.best_frame in range(0, 37)
    sheet = found.contact_sheet()
    assert sheet.shape[0] > 3 * 160 and sheet.dtype == np.uint8
    doc = found.to_dict()
    assert doc["persons"][2] == {**doc["persons"][2], "id": "p3", "tracks": [[10, 15]], "frames": 6}


def test_an_instant_tracklet_joins_its_person_or_founds_nobody() -> None:
    recognizer = ColourRecognizer()
    collector = TrackletCollector(recognizer, fps=10.0)
    script = [[("a", 20, 50, 0)]] * 8 + [[("a", 300, 50, 1)]] * 2 + [[("c", 200, 50, 2)]] * 2
    for index, faces in enumerate(script):
        collector.add(*_indexed(frame(faces), index))
    groups = group_people(collector.tracklets(), recognizer, 0.3, min_frames=3)
    assert [[t.track_id for t in g] for g in groups] == [[0, 1]]  # c, seen for two frames, is left out
    assert len(group_people(collector.tracklets(), recognizer, 0.3)) == 2


def _indexed(picture: tuple[Image, list[Face]], index: int) -> tuple[Image, int, float, list[Face]]:
    return picture[0], index, index / 10.0, picture[1]


PATTERNS_OF = {colour: person for person, colour in COLOURS.items()}


def _colour(tracklet) -> tuple[int, int, int]:
    embedding = tracklet.embedding
    return min(COLOURS.values(), key=lambda c: np.linalg.norm(np.asarray(c) / np.linalg.norm(c) - embedding))
