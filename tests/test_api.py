"""End to end through the file API and the CLI: real photos, the bundled clip, and bad input."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.recognize import DlibRecognizer
from masquerade.api import swap
from masquerade.cli.main import main
from masquerade.config import EncodeOptions, RunConfig, RuntimeOptions, SelectOptions
from masquerade.pipeline import Pipeline
from masquerade.verify import verify_file

ALL = RunConfig(select=SelectOptions(mode="all"))


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(ALL)


@pytest.fixture(scope="module")
def swapped_clip(tmp_path_factory, examples_dir, pipeline) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("clip") / "swapped.mp4"
    summary = swap([examples_dir / "astronaut.png"], examples_dir / "sample.mp4", out, ALL, pipeline=pipeline)
    return out, summary


def _packets(path: Path, kind: str) -> list[tuple[int, int, bytes]]:
    with av.open(str(path)) as container:
        stream = next(s for s in container.streams if s.type == kind)
        return [(p.pts, p.dts, bytes(p)) for p in container.demux(stream) if p.dts is not None]


def _video(path: Path) -> tuple[list[int], object, float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        pts = [f.pts for f in container.decode(stream)]
        return pts, stream.average_rate, float(stream.duration * stream.time_base)


def test_video_round_trip_keeps_frames_timing_and_audio(swapped_clip, examples_dir):
    out, summary = swapped_clip
    original = examples_dir / "sample.mp4"
    pts_in, rate_in, duration_in = _video(original)
    pts_out, rate_out, duration_out = _video(out)
    assert summary.frames == len(pts_in) == len(pts_out) == 150
    assert pts_out == pts_in and rate_out == rate_in
    assert duration_out == pytest.approx(duration_in, abs=1e-6)
    assert _packets(out, "audio") == _packets(original, "audio")  # remuxed bit for bit
    assert summary.faces_swapped >= 145  # the face is visible on every frame


def test_swapped_video_is_labelled_and_the_face_moved(swapped_clip, examples_dir, astronaut):
    out, summary = swapped_clip
    label = verify_file(out).label
    assert label.labelled and "c2pa.edited" in label.claims["actions"]
    assert label.claims["faces_replaced"] == summary.faces_swapped
    assert label.claims["description"].startswith("AI face swap")
    analyser, recognizer = MeshAnalyser(), DlibRecognizer()
    source = recognizer.embed(astronaut, analyser.detect(astronaut)[0])
    with av.open(str(examples_dir / "sample.mp4")) as a, av.open(str(out)) as b:
        before = next(iter(a.decode(video=0))).to_ndarray(format="bgr24")
        after = next(iter(b.decode(video=0))).to_ndarray(format="bgr24")
    d_before = recognizer.distance(source, recognizer.embed(before, analyser.detect(before)[0]))
    d_after = recognizer.distance(source, recognizer.embed(after, analyser.detect(after)[0]))
    assert d_after < d_before - 0.08


def test_reference_mode_swaps_only_the_matching_person(tmp_path, examples_dir, two_people, pipeline):
    group = two_people
    target = tmp_path / "two.png"
    cv2.imwrite(str(target), group)
    out = tmp_path / "out.png"
    config = RunConfig(select=SelectOptions(mode="reference", reference=examples_dir / "obama2.jpg"))
    summary = swap([examples_dir / "astronaut.png"], target, out, config)
    assert summary.faces_swapped == 1
    result = cv2.imread(str(out))
    diff = np.abs(result.astype(int) - group.astype(int)).max(axis=2)
    faces = MeshAnalyser().detect(group)
    assert len(faces) == 2  # left to right: Obama, Biden

    def change(face) -> float:
        x1, y1, x2, y2 = face.bbox.astype(int)
        return float(diff[y1:y2, x1:x2].mean())

    assert change(faces[0]) > 10
    assert change(faces[1]) < 4  # Biden's face: only the invisible watermark


def test_image_swap_moves_identity_and_leaves_far_pixels(tmp_path, examples_dir, obama, astronaut):
    out = tmp_path / "out.jpg"
    assert main(["swap", "-q", "-s", str(examples_dir / "astronaut.png"), "-t",
                 str(examples_dir / "obama.jpg"), "-o", str(out)]) == 0
    result = cv2.imread(str(out))
    assert result.shape == obama.shape
    analyser, recognizer = MeshAnalyser(), DlibRecognizer()
    face = analyser.detect(obama)[0]
    source = recognizer.embed(astronaut, analyser.detect(astronaut)[0])
    assert recognizer.distance(source, recognizer.embed(result, analyser.detect(result)[0])) < (
        recognizer.distance(source, recognizer.embed(obama, face)) - 0.08)
    x1, y1, x2, y2 = face.bbox.astype(int)
    far = np.ones(obama.shape[:2], bool)
    far[max(y1 - 60, 0):y2 + 60, max(x1 - 60, 0):x2 + 60] = False
    diff = np.abs(result.astype(int) - obama.astype(int))[far]
    assert diff.mean() < 2.5  # watermark + JPEG re-encode only
    assert verify_file(out).labelled
    assert leftovers(tmp_path) == ["out.jpg"]


def test_no_matching_face_warns_and_writes_the_target(tmp_path, examples_dir, capsys, astronaut):
    out = tmp_path / "out.png"
    code = main(["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(examples_dir / "astronaut.png"),
                 "-o", str(out), "--reference", str(examples_dir / "biden.jpg")])
    err = capsys.readouterr().err
    assert code == 0 and "warning: no matching face" in err
    result = cv2.imread(str(out))
    mse = float(((result.astype(float) - astronaut) ** 2).mean())
    assert 10 * np.log10(255**2 / mse) >= 40  # unchanged but for the invisible watermark
    result = verify_file(out)
    assert result.labelled and result.watermark.found
    _assert_claims_no_swap(result.label.claims)
    assert main(["verify", str(out)]) == 0
    assert "no face replaced (watermark only)" in capsys.readouterr().out


def _assert_claims_no_swap(claims: dict) -> None:
    """The manifest says what happened: a watermark, no face replaced, no AI-composite source type."""
    assert "c2pa.edited" not in claims["actions"] and "c2pa.watermarked" in claims["actions"]
    assert claims["digital_source_type"] is None and claims["faces_replaced"] == 0
    assert "no face was replaced" in claims["description"] and "AI face swap" not in claims["description"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_video_without_a_matching_face_is_not_labelled_a_face_swap(tmp_path, examples_dir, suffix):
    # sample.mp4 shows obama2; the reference is Biden: no frame has a face to replace.
    out = tmp_path / f"out{suffix}"
    config = RunConfig(select=SelectOptions(mode="reference", reference=examples_dir / "biden.jpg"),
                       encode=EncodeOptions(trim_end=0.3))
    summary = swap([examples_dir / "astronaut.png"], examples_dir / "sample.mp4", out, config)
    assert summary.faces_swapped == 0 and summary.frames >= 7
    result = verify_file(out, max_frames=4)
    assert result.watermark.found
    if suffix == ".mp4":
        assert result.label.valid and result.label.by_masquerade
        _assert_claims_no_swap(result.label.claims)
    else:  # Matroska: plain tags, rewritten once the run found nothing to replace
        assert result.label.kind == "tag" and result.label.claims["faces_replaced"] is False
        assert "no face was replaced" in result.label.claims["description"]
        assert result.label.claims["digital_source_type"] is None


# -- bad input: one line, non-zero exit, nothing left behind -----------------------------------------

@pytest.fixture()
def bad_files(tmp_path, examples_dir) -> dict[str, Path]:
    files = {
        "text_jpg": tmp_path / "notes.jpg",
        "empty_mp4": tmp_path / "empty.mp4",
        "truncated_mp4": tmp_path / "truncated.mp4",
        "faceless": tmp_path / "wall.png",
    }
    files["text_jpg"].write_text("this is not a picture\n")
    files["empty_mp4"].write_bytes(b"")
    data = (examples_dir / "sample.mp4").read_bytes()
    files["truncated_mp4"].write_bytes(data[: len(data) // 2])
    cv2.imwrite(str(files["faceless"]), np.full((300, 400, 3), 128, np.uint8))
    return files


def _run_bad(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return code, err[0]


@pytest.mark.parametrize("case, expect", [
    ("missing_source", "nope.jpg: no such file"),
    ("missing_target", "nope.jpg: no such file"),
    ("text_target", "notes.jpg"),
    ("text_source", "notes.jpg"),
    ("empty_video", "empty.mp4"),
    ("truncated_video", "truncated.mp4"),
    ("faceless_source", "no face found in source image"),
    ("second_source_faceless", "wall.png"),
    ("missing_folder", "does not exist"),
    ("output_is_target", "overwrite the target"),
    ("bad_image_extension", ".gif"),
    ("video_as_png", ".png"),
])
def test_bad_input_gets_one_line_and_no_output(case, expect, tmp_path, examples_dir, bad_files, capsys):
    ex = examples_dir
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    src, img, vid = ex / "obama.jpg", ex / "biden.jpg", ex / "sample.mp4"
    argv = {
        "missing_source": [tmp_path / "nope.jpg", img, out_dir / "o.jpg"],
        "missing_target": [src, tmp_path / "nope.jpg", out_dir / "o.jpg"],
        "text_target": [src, bad_files["text_jpg"], out_dir / "o.jpg"],
        "text_source": [bad_files["text_jpg"], img, out_dir / "o.jpg"],
        "empty_video": [src, bad_files["empty_mp4"], out_dir / "o.mp4"],
        "truncated_video": [src, bad_files["truncated_mp4"], out_dir / "o.mp4"],
        "faceless_source": [bad_files["faceless"], img, out_dir / "o.jpg"],
        "missing_folder": [src, img, tmp_path / "missing" / "o.jpg"],
        "output_is_target": [src, img, img],
        "bad_image_extension": [src, img, out_dir / "o.gif"],
        "video_as_png": [src, vid, out_dir / "o.png"],
    }
    if case == "second_source_faceless":
        faceless = str(bad_files["faceless"])
        args = ["swap", "-s", str(src), faceless, "-t", str(img), "-o", str(out_dir / "o.jpg")]
    else:
        s, t, o = argv[case]
        args = ["swap", "-s", str(s), "-t", str(t), "-o", str(o)]
    code, line = _run_bad(args, capsys)
    assert code != 0
    assert expect in line, line
    assert leftovers(out_dir) == []


@pytest.mark.parametrize("extra, output, expect", [
    (["--video-quality", "51"], "o.mp4", "would erase the invisible watermark"),
    (["--video-quality", "45", "--video-encoder", "libvpx-vp9"], "o.webm", "would erase the invisible"),
    (["--image-quality", "10"], "o.jpg", "must be between 40 and 100"),
])
def test_settings_that_would_erase_the_watermark_are_refused_up_front(
    extra, output, expect, tmp_path, examples_dir, capsys, monkeypatch
):
    # Refused before the pipeline is even built: no model is loaded, no frame decoded.
    monkeypatch.setattr("masquerade.api.Pipeline", None)
    target = examples_dir / ("sample.mp4" if output.endswith(("mp4", "webm")) else "biden.jpg")
    args = ["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(target), "-o", str(tmp_path / output)]
    code, line = _run_bad([*args, *extra], capsys)
    assert code == 2 and expect in line, line
    assert leftovers(tmp_path) == []


def test_ctrl_c_during_a_video_leaves_no_output(tmp_path, examples_dir, pipeline):
    out = tmp_path / "out.mp4"

    class Interrupting:
        def __init__(self, inner):
            self.inner, self.calls = inner, 0

        def prepare(self, sources):
            return self.inner.prepare(sources)

        def swap_batch(self, images, faces, source):
            self.calls += 1
            if self.calls == 20:
                raise KeyboardInterrupt
            return self.inner.swap_batch(images, faces, source)

    original = pipeline._stages.swapper
    pipeline._stages.swapper = Interrupting(original)
    try:
        with pytest.raises(KeyboardInterrupt):
            swap([examples_dir / "obama.jpg"], examples_dir / "sample.mp4", out, ALL, pipeline=pipeline)
    finally:
        pipeline._stages.swapper = original
    assert leftovers(tmp_path) == []


def test_grey_and_alpha_targets_keep_their_nature(tmp_path, examples_dir, obama):
    grey = tmp_path / "grey.png"
    cv2.imwrite(str(grey), cv2.cvtColor(obama, cv2.COLOR_BGR2GRAY))
    out = tmp_path / "grey_out.png"
    assert swap([examples_dir / "astronaut.png"], grey, out, ALL).faces_swapped == 1
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.ndim == 2 or (np.ptp(result.astype(int), axis=2).max() == 0)  # no colour crept in

    rgba = tmp_path / "rgba.png"
    alpha = np.full(obama.shape[:2], 255, np.uint8)
    alpha[:, :100] = 0
    cv2.imwrite(str(rgba), np.dstack([obama, alpha]))
    out = tmp_path / "rgba_out.webp"
    assert swap([examples_dir / "astronaut.png"], rgba, out, ALL).faces_swapped == 1
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.shape[2] == 4 and np.array_equal(result[..., 3] > 127, alpha > 127)


def test_refused_content_mid_video_stops_and_leaves_no_output(tmp_path, examples_dir, pipeline, monkeypatch,
                                                              capsys):
    from masquerade._stages.guard import Detection
    from masquerade.errors import ContentRefused

    real_detect = pipeline.guard.detect
    checked: list[int] = []

    def detect(image, faces=(), whole=True, remember=False):
        checked.append(1)
        if len(checked) >= 3:  # a later sampled frame (>= 1 per second) shows exposed content
            return [Detection("FEMALE_BREAST_EXPOSED", 0.9, (10.0, 10.0, 50.0, 50.0))]
        return real_detect(image, faces, whole, remember)

    monkeypatch.setattr(pipeline.guard, "detect", detect)
    out = tmp_path / "out.mp4"
    with pytest.raises(ContentRefused):
        swap([examples_dir / "obama.jpg"], examples_dir / "sample.mp4", out, ALL, pipeline=pipeline)
    assert leftovers(tmp_path) == []
    assert len(checked) == 3


def test_refused_source_exits_before_any_output(tmp_path, examples_dir, capsys, monkeypatch):
    from masquerade._stages.guard import ContentGuard, Detection

    exposed = Detection("MALE_GENITALIA_EXPOSED", 0.95, (0.0, 0.0, 9.0, 9.0))
    monkeypatch.setattr(ContentGuard, "detect", lambda self, image, *views, **kw: [exposed])
    source, target = str(examples_dir / "obama.jpg"), str(examples_dir / "biden.jpg")
    code, line = _run_bad(["swap", "-s", source, "-t", target, "-o", str(tmp_path / "o.jpg")], capsys)
    assert code == 3 and "obama.jpg" in line
    assert leftovers(tmp_path) == []


def test_rotated_video_verifies_even_when_the_rotation_is_stripped(tmp_path, examples_dir, obama):
    """masquerade marks upright frames; verify must read them upright, or turned when a re-encode
    dropped the display matrix."""
    portrait = cv2.resize(obama, (360, 448))
    stored = np.ascontiguousarray(np.rot90(portrait, k=1))  # stored turned, shown upright by the matrix
    clip = tmp_path / "phone.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        stream.set_display_rotation(90)
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(stored, format="bgr24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    swapped = tmp_path / "swapped.mp4"
    swap([examples_dir / "astronaut.png"], clip, swapped, ALL)
    assert verify_file(swapped).watermark.found

    stripped = tmp_path / "stripped.mp4"  # re-encoded by a tool that ignores the display matrix
    with av.open(str(swapped)) as src, av.open(str(stripped), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "28"})
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        for i, frame in enumerate(src.decode(video=0)):
            plain = av.VideoFrame.from_ndarray(frame.to_ndarray(format="bgr24"), format="bgr24")
            plain.pts = i
            out.mux(stream.encode(plain))
        out.mux(stream.encode())
    result = verify_file(stripped)
    assert result.label.kind is None and result.watermark.found


def test_the_engine_hands_the_swapper_batches_of_frames(tmp_path, examples_dir, swapped_clip):
    calls: list[int] = []
    config = RunConfig(select=SelectOptions(mode="all"), runtime=RuntimeOptions(frame_batch=5))
    pipeline = Pipeline(config)
    inner = pipeline._stages.swapper

    class Counting:
        def prepare(self, sources):
            return inner.prepare(sources)

        def swap_batch(self, images, faces, source):
            calls.append(len(images))
            return inner.swap_batch(images, faces, source)

    pipeline._stages.swapper = Counting()
    out = tmp_path / "batched.mp4"
    summary = swap([examples_dir / "astronaut.png"], examples_dir / "sample.mp4", out, config,
                   pipeline=pipeline)
    assert summary.frames == swapped_clip[1].frames == sum(calls)  # every frame has the face
    assert calls[:-1] == [5] * (len(calls) - 1) and 1 <= calls[-1] <= 5


def test_frame_batches_carry_the_analysis_and_stay_close_to_frame_by_frame(examples_dir, astronaut):
    """In a batch the embedded swap analyses a face afresh on one frame and carries that analysis to
    the ``CARRIED_FRAMES`` frames after it: the fresh frames are exactly a frame-by-frame run's, the
    carried ones within the analysis' own change from one frame to the next."""
    from masquerade._stages.swap_mesh import CARRIED_FRAMES
    from masquerade.media.reader import VideoReader

    results = []
    for batch in (1, 5):
        config = RunConfig(select=SelectOptions(mode="all"), runtime=RuntimeOptions(frame_batch=batch))
        pipeline = Pipeline(config)
        source = pipeline.prepare_source([("astronaut", astronaut)])
        with VideoReader(examples_dir / "sample.mp4", None, 2.0) as reader:
            results.append([ctx.image for ctx in pipeline.swap_frames(reader.frames(), source, 25.0)])
    assert len(results[0]) == len(results[1]) == 50
    for index, (a, b) in enumerate(zip(*results, strict=True)):
        if index % 5 % (CARRIED_FRAMES + 1) == 0:  # analysed afresh
            np.testing.assert_array_equal(a, b)
        else:
            error = np.mean((a.astype(float) - b) ** 2)
            assert error == 0 or 10 * np.log10(255**2 / error) > 40, (index, error)


def test_render_workers_give_the_same_frames_as_one_thread(examples_dir, astronaut):
    from masquerade.engine import StreamEngine
    from masquerade.media.reader import VideoReader

    results = {}
    for workers in (1, 3):
        pipeline = Pipeline(RunConfig(select=SelectOptions(mode="all"),
                                      runtime=RuntimeOptions(frame_batch=2, frame_workers=workers)))
        source = pipeline.prepare_source([("astronaut", astronaut)])
        frames: list = []
        with VideoReader(examples_dir / "sample.mp4", None, 1.6) as reader:
            analyse, render = pipeline.video_stages(source, 25.0, None)
            StreamEngine(depth=2).run_batches(reader.frames(), analyse, frames.append, pipeline.frame_batch(),
                                              finish=render, workers=pipeline.frame_workers())
        results[workers] = frames
    assert [f.index for f in results[3]] == list(range(40))
    for a, b in zip(results[1], results[3], strict=True):
        assert a.swapped == b.swapped == 1
        np.testing.assert_array_equal(a.image, b.image)


def test_source_photos_of_different_people_are_named(pipeline, obama, obama2, biden):
    from masquerade.api import different_people

    same = [("obama.jpg", obama), ("obama2.jpg", obama2)]
    assert different_people(pipeline, same, pipeline.prepare_source(same)) == []
    mixed = [*same, ("biden.jpg", biden)]
    (warning,) = different_people(pipeline, mixed, pipeline.prepare_source(mixed))
    assert "biden.jpg (distance 0." in warning and "differ from obama.jpg" in warning
    assert "obama2.jpg" not in warning


@pytest.mark.parametrize(("swapper", "enhancer", "cpus", "expect"), [
    ("mesh", "none", 1, 2), ("mesh", "none", 2, 2), ("mesh", "none", 8, 4), ("mesh", "none", 32, 4),
    ("mesh", "gfpgan_1.4", 2, 1), ("inswapper_128", "none", 2, 1), ("inswapper_128", "none", 6, 3),
])
def test_default_render_workers_follow_the_cores_and_the_swapper(swapper, enhancer, cpus, expect):
    """Half the cores, 1 to 4; the embedded swap without an enhancer gets a second thread even on 2
    cores (its NumPy and OpenCV work runs beside the first thread's), a neural model never does."""
    from masquerade.config import EnhanceOptions, SwapOptions
    from masquerade.pipeline import default_frame_workers

    config = RunConfig(swap=SwapOptions(swapper=swapper), enhance=EnhanceOptions(enhancer=enhancer))
    assert default_frame_workers(config, cpus) == expect
