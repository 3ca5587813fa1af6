"""People, not faces, on real photos: ``faces``, ``--map``, ``--reference-frame``, batches and ``enhance``.

The clips come from ``masquerade.bench.people_clips`` (the bundled portraits moving on a wall, with
the truth known per frame), small and short to keep the suite quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from masquerade import RunConfig, SelectOptions, find_people, swap
from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.recognize import DlibRecognizer
from masquerade.api import RunHooks
from masquerade.bench.people_clips import PeopleClip, TrueFace, write_people_clip
from masquerade.cli.main import main
from masquerade.cli.parser import parse_map
from masquerade.errors import UsageError
from masquerade.media.reader import VideoReader
from masquerade.pipeline import Pipeline
from masquerade.types import Face
from masquerade.verify import verify_file

SIZE = (448, 252)


@pytest.fixture(scope="module")
def clips(tmp_path_factory, photos) -> dict[str, PeopleClip]:
    folder = tmp_path_factory.mktemp("people-clips")
    return {name: write_people_clip(name, folder, photos, SIZE, seconds=0.5)
            for name in ("cuts", "crossing", "side_by_side")}


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(RunConfig())


@pytest.fixture(scope="module")
def two_people_png(tmp_path_factory, two_people) -> Path:
    path = tmp_path_factory.mktemp("two") / "two.png"
    cv2.imwrite(str(path), two_people)
    return path


def _match(truth: TrueFace, faces: list[Face]) -> Face | None:
    x1, y1, x2, y2 = truth.box
    return next((f for f in faces if x1 <= f.center[0] <= x2 and y1 <= f.center[1] <= y2), None)


def _changed(before: np.ndarray, after: np.ndarray, face: Face) -> float:
    x1, y1, x2, y2 = face.bbox.astype(int)
    return float(np.abs(after[y1:y2, x1:x2].astype(int) - before[y1:y2, x1:x2]).mean())


def _only_swapped(before: np.ndarray, after: np.ndarray, faces: list[Face], index: int) -> None:
    """Face ``index`` was swapped; the others show the invisible watermark only."""
    changes = [_changed(before, after, face) for face in faces]
    assert changes[index] > 6 and all(c < 3 for i, c in enumerate(changes) if i != index), changes


# -- faces ------------------------------------------------------------------------------------------


def test_faces_finds_each_person_once_across_cuts_and_two_photos(clips, tmp_path, capsys) -> None:
    clip = clips["cuts"]  # obama, biden, obama in another photo, the astronaut: three people
    out = tmp_path / "people"
    assert main(["faces", "-q", str(clip.path), "-o", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    persons = doc["persons"]
    assert [p["id"] for p in persons] == ["p1", "p2", "p3"]
    # p1 (most screen time) is Obama: two appearances, in two different photos, one person.
    assert [len(p["tracks"]) for p in persons] == [2, 1, 1]
    shots = [round(n * 0.5 * 25) for n in (1.6, 1.6, 1.6, 1.2)]
    assert persons[0]["frames"] == shots[0] + shots[2]
    assert persons[0]["screen_time_s"] == pytest.approx((shots[0] + shots[2]) / 25)
    assert persons[1]["tracks"] == [[shots[0], shots[0] + shots[1] - 1]]
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", "p1.jpg", "p2.jpg", "p3.jpg"]
    assert persons[0]["thumbnail"] == str(out / "p1.jpg")
    # The crops are people the recognizer knows again.
    analyser, recognizer = MeshAnalyser(), DlibRecognizer()
    crop = cv2.imread(str(out / "p2.jpg"))
    biden = cv2.imread(str(Path(__file__).parent.parent / "examples" / "biden.jpg"))
    d = recognizer.distance(recognizer.embed(crop, analyser.detect(crop)[0]),
                            recognizer.embed(biden, analyser.detect(biden)[0]))
    assert d < recognizer.default_threshold
    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > 3 * 160


def test_people_and_mapping_through_a_crossing(clips, pipeline) -> None:
    clip = clips["crossing"]
    with VideoReader(clip.path) as reader:
        people = pipeline.find_people(reader.frames(), 25.0, clip.path)
    assert len(people.persons) == 2  # nobody split, nobody merged

    # The found crops as references, each mapped to another photo: per frame, the right source.
    sources = {"p1": "astronaut", "p2": "obama"}
    plan = [((p.id, p.crop), [(sources[p.id], _photo(sources[p.id]))]) for p in people.persons]
    mapped = pipeline.prepare_map([], plan)
    recognizer = pipeline._stages.recognizer
    truth_of = {}
    for k, person in enumerate(people.persons):
        nearest = min(("obama", "biden"), key=lambda n: recognizer.distance(person.embedding, _embedding(n)))
        truth_of[k] = nearest
    assert sorted(truth_of.values()) == ["biden", "obama"]
    right = total = 0
    with VideoReader(clip.path) as reader:
        for ctx in pipeline.swap_frames(reader.frames(), mapped, 25.0):
            for true in clip.truth[ctx.index]:
                face = _match(true, ctx.faces)
                if face is None or true.visible < 0.5:
                    continue
                total += 1
                right += face.person is not None and truth_of[face.person] == true.person
                assert ctx.swapped == len([f for f in ctx.faces if f.person is not None])
    assert total > 60 and right / total >= 0.98


_EMBEDDINGS: dict[str, np.ndarray] = {}


def _photo(name: str) -> np.ndarray:
    files = {"obama": "obama.jpg", "biden": "biden.jpg", "astronaut": "astronaut.png"}
    return cv2.imread(str(Path(__file__).parent.parent / "examples" / files[name]))


def _embedding(name: str) -> np.ndarray:
    if name not in _EMBEDDINGS:
        image = _photo(name)
        _EMBEDDINGS[name] = DlibRecognizer().embed(image, MeshAnalyser().detect(image)[0])
    return _EMBEDDINGS[name]


# -- --map and -s on one picture -----------------------------------------------------------------------


def test_map_alone_swaps_only_that_person_and_with_s_everyone_else_too(tmp_path, examples_dir, two_people,
                                                                       two_people_png) -> None:
    faces = MeshAnalyser().detect(two_people)  # obama, biden
    recognizer = DlibRecognizer()
    out = tmp_path / "mapped.png"
    mapping = {examples_dir / "obama2.jpg": examples_dir / "astronaut.png"}
    summary = swap([], two_people_png, out, mapping=mapping)
    assert summary.faces_swapped == 1
    _only_swapped(two_people, cv2.imread(str(out)), faces, 0)

    out = tmp_path / "both.png"
    config = RunConfig(select=SelectOptions(mode="all"))
    summary = swap([examples_dir / "obama.jpg"], two_people_png, out, config,
                   mapping={str(examples_dir / "obama2.jpg"): [str(examples_dir / "astronaut.png")]})
    assert summary.faces_swapped == 2
    result = cv2.imread(str(out))
    # Each face moved towards its own source: obama's towards the astronaut, biden's towards obama.
    for face, source in ((faces[0], "astronaut"), (faces[1], "obama")):
        before = recognizer.distance(recognizer.embed(two_people, face), _embedding(source))
        after = recognizer.distance(recognizer.embed(result, face), _embedding(source))
        assert after < before - 0.05, (source, before, after)


def test_a_faces_crop_works_as_the_map_reference(tmp_path, examples_dir, two_people, two_people_png,
                                                 capsys) -> None:
    folder = tmp_path / "people"
    assert main(["faces", str(two_people_png), "-o", str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("p1: face at ")
    assert lines[-1].endswith(f"2 people; contact sheet and crops in {folder}")
    out = tmp_path / "out.png"
    # In a picture everyone has the same screen time: ids go left to right, so p2 is Biden.
    assert main(["swap", "-q", "--map", f"{folder / 'p2.jpg'}={examples_dir / 'astronaut.png'}",
                 "-t", str(two_people_png), "-o", str(out)]) == 0
    _only_swapped(two_people, cv2.imread(str(out)), MeshAnalyser().detect(two_people), 1)


def test_one_person_mapped_twice_to_different_sources_is_refused(tmp_path, examples_dir, two_people_png,
                                                                 capsys) -> None:
    ex = examples_dir
    code = main(["swap", "--map", f"{ex / 'obama.jpg'}={ex / 'astronaut.png'}",
                 "--map", f"{ex / 'obama2.jpg'}={ex / 'biden.jpg'}", "-t", str(two_people_png),
                 "-o", str(tmp_path / "o.png")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "show the same person" in err[0]
    assert list(tmp_path.iterdir()) == []
    code = main(["swap", "-t", str(two_people_png), "-o", str(tmp_path / "o.png")])
    assert code == 2 and "-s" in capsys.readouterr().err


def test_map_arguments_split_where_files_exist(tmp_path) -> None:
    odd = tmp_path / "a=b+c.jpg"
    odd.write_bytes(b"")
    assert parse_map("ref.jpg=x.jpg+y.jpg").sources == (Path("x.jpg"), Path("y.jpg"))
    entry = parse_map(f"{odd}={odd}")
    assert entry.reference == odd and entry.sources == (odd,)
    for bad in ("ref.jpg", "=x.jpg", "ref.jpg=x.jpg+"):
        with pytest.raises(UsageError):
            parse_map(bad)


# -- --reference-frame ------------------------------------------------------------------------------------


def test_reference_frame_picks_the_person_in_a_picture(tmp_path, examples_dir, two_people, two_people_png,
                                                       capsys) -> None:
    out = tmp_path / "out.png"
    source = str(examples_dir / "astronaut.png")
    assert main(["swap", "-q", "-s", source, "--reference-frame", "0", "--face-index", "1",
                 "-t", str(two_people_png), "-o", str(out)]) == 0
    _only_swapped(two_people, cv2.imread(str(out)), MeshAnalyser().detect(two_people), 1)
    for extra, expect in ((["--reference-frame", "0", "--face-index", "2"], "has 2 face(s)"),
                          (["--reference-frame", "3"], "its only frame is 0"),
                          (["--reference-frame", "0", "--faces", "all"], "does not go with --faces all")):
        code = main(["swap", "-s", source, "-t", str(two_people_png), "-o", str(tmp_path / "x.png"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and expect in err[0], err


def test_reference_frame_follows_that_person_through_a_video(clips, tmp_path, examples_dir) -> None:
    clip = clips["side_by_side"]  # obama | biden, then a cut to biden | obama
    selected: list[tuple[int, list[Face]]] = []

    class Record(RunHooks):
        def on_frame(self, frame) -> None:
            selected.append((frame.index, list(frame.selected)))

    config = RunConfig(select=SelectOptions(reference_frame=0, face_index=1))  # biden, on the right at first
    summary = swap([examples_dir / "astronaut.png"], clip.path, tmp_path / "out.mp4", config, Record())
    right = total = 0
    for index, chosen in selected:
        for true in clip.truth[index]:
            total += 1
            picked = _match(true, chosen) is not None
            right += picked == (true.person == "biden")
    assert summary.frames == len(clip.truth) and right / total >= 0.98


# -- batches ---------------------------------------------------------------------------------------------


def test_a_folder_batch_goes_on_past_a_broken_file(tmp_path, examples_dir, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        (folder / name).write_bytes((examples_dir / name).read_bytes())
    (folder / "broken.jpg").write_text("not a picture\n")
    (folder / "notes.txt").write_text("ignored: not an image or a video\n")
    out = tmp_path / "out"
    code = main(["swap", "-s", str(examples_dir / "astronaut.png"), "-t", str(folder), "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["biden_swapped.jpg", "obama_swapped.jpg"]
    assert all(verify_file(p).labelled for p in out.iterdir())
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert captured.out.count("ok: ") == 2
    assert "2 of 3 files swapped" in captured.err and "1 failed" in captured.err

    # One target with an output folder (roop accepted a directory too), and several -t.
    single = tmp_path / "single"
    single.mkdir()
    source = str(examples_dir / "astronaut.png")
    assert main(["swap", "-q", "-s", source, "-t", str(examples_dir / "obama.jpg"), "-o", str(single)]) == 0
    assert [p.name for p in single.iterdir()] == ["obama_swapped.jpg"]
    code = main(["swap", "-s", str(examples_dir / "astronaut.png"), "-t", str(examples_dir / "obama.jpg"),
                 "-t", str(folder / "obama.jpg"), "-o", str(tmp_path / "clash")])
    assert code == 2 and "would both be written" in capsys.readouterr().err


def test_a_mixed_batch_takes_video_options_for_its_videos_and_image_quality_for_its_images(
        tmp_path, examples_dir, clips, capsys) -> None:
    # On one target, --video-quality with an image is refused; in a batch it is for the batch's videos.
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "obama.jpg").write_bytes((examples_dir / "obama.jpg").read_bytes())
    (folder / "cuts.mp4").write_bytes(clips["cuts"].path.read_bytes())
    out = tmp_path / "out"
    code = main(["swap", "-q", "-s", str(examples_dir / "astronaut.png"), "-t", str(folder), "-o", str(out),
                 "--video-quality", "20", "--image-quality", "85"])
    assert code == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["cuts_swapped.mp4", "obama_swapped.jpg"]
    assert all(verify_file(p).labelled for p in out.iterdir())
    code = main(["swap", "-q", "-s", str(examples_dir / "astronaut.png"), "-t", str(folder / "obama.jpg"),
                 "-o", str(tmp_path / "one.jpg"), "--video-quality", "20"])
    assert code == 2 and "--video-quality" in capsys.readouterr().err


# -- enhance ---------------------------------------------------------------------------------------------


@pytest.fixture()
def enhancer_cache(tmp_path) -> Path:
    from masquerade.models import standins
    from masquerade.models.store import ModelStore

    root = tmp_path / "models"
    path = tmp_path / "gfpgan.onnx"
    path.write_bytes(standins.to_bytes(standins.image_model(mode="flat", colour=(-1.0, 1.0, -1.0))))
    ModelStore(root).import_file(path, "gfpgan_1.4", allow_unknown_hash=True)
    return root


def test_enhance_alone_restores_faces_and_says_so_in_the_label(tmp_path, examples_dir, obama, enhancer_cache,
                                                               capsys) -> None:
    out = tmp_path / "enhanced.png"
    code = main(["enhance", "-t", str(examples_dir / "obama.jpg"), "-o", str(out), "--enhancer", "gfpgan_1.4",
                 "--enhancer-blend", "1", "--models-dir", str(enhancer_cache)])
    assert code == 0 and "1 face enhanced" in capsys.readouterr().out
    result = cv2.imread(str(out)).astype(int)
    face = MeshAnalyser().detect(obama)[0]
    cx, cy = (int(v) for v in face.kps5[2])
    b, g, r = result[cy, cx]
    assert g > 200 and b < 60 and r < 60  # the stand-in paints faces green: only the enhancer ran
    x1, y1, x2, y2 = face.bbox.astype(int)
    far = np.ones(obama.shape[:2], bool)
    far[max(y1 - 150, 0):y2 + 150, max(x1 - 150, 0):x2 + 150] = False
    assert np.abs(result - obama.astype(int))[far].max() <= 12  # the watermark only
    reading = verify_file(out)
    assert reading.labelled and "enhancement" in reading.label.claims["description"]
    assert "no face was swapped" in reading.label.claims["description"]
    with pytest.raises(SystemExit):  # enhance takes no source
        main(["enhance", "-s", str(examples_dir / "biden.jpg"), "-t", str(examples_dir / "obama.jpg"),
              "-o", str(out), "--enhancer", "gfpgan_1.4"])


def test_version_has_a_short_flag(capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["-v"])
    assert exit_.value.code == 0 and capsys.readouterr().out.startswith("masquerade ")


def test_find_people_in_a_picture(two_people_png) -> None:
    people = find_people(two_people_png)
    assert [p.id for p in people.persons] == ["p1", "p2"]
    assert find_people(two_people_png).to_dict() == people.to_dict()  # the same ids every time
    assert people.persons[0].best_box[0] < people.persons[1].best_box[0]
    assert people.to_dict()["persons"][0]["tracks"] == [[0, 0]]
