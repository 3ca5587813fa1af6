"""No public call swaps without the content guard and the watermark: each way around them is tried.

The refusals are driven through the guard's detector output (no explicit image anywhere); the guard's
reach is measured with its own face classes, a benign proxy for the classes it refuses.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import masquerade
from masquerade._stages import guard as G
from masquerade._stages.watermark import read_watermark
from masquerade.config import RunConfig, SelectOptions
from masquerade.errors import ContentRefused, UsageError
from masquerade.pipeline import Pipeline, PreparedSource
from masquerade.types import FrameContext

ALL = RunConfig(select=SelectOptions(mode="all"))
EXPOSED = G.Detection("BUTTOCKS_EXPOSED", 0.9, (0.0, 0.0, 9.0, 9.0))


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(ALL)


@pytest.fixture(scope="module")
def source(pipeline, astronaut) -> PreparedSource:
    return pipeline.prepare_source([("astronaut", astronaut)])


def _frames(image: np.ndarray, n: int) -> list[FrameContext]:
    small = np.ascontiguousarray(cv2.resize(image, (360, 440)))
    return [FrameContext(index=i, image=small.copy()) for i in range(n)]


@pytest.fixture
def spy(pipeline, monkeypatch) -> list[tuple[int, bool]]:
    """Records each guard look (number of face views, whole image or not); the real model still runs."""
    calls: list[tuple[int, bool]] = []
    real = G.ContentGuard.detect

    def detect(self, image, faces=(), whole=True, remember=False):
        calls.append((len(faces), whole))
        return real(self, image, faces, whole)

    monkeypatch.setattr(G.ContentGuard, "detect", detect)
    return calls


# -- the public surface ---------------------------------------------------------------------------
def test_the_public_surface_offers_no_stages_and_no_guard_switch(pipeline):
    exported = set(masquerade.__all__)
    assert not {n for n in exported if "stage" in n.lower() or "build" in n.lower()}
    with pytest.raises(TypeError):
        Pipeline(ALL, stages=object())  # type: ignore[call-arg]
    assert not hasattr(pipeline, "stages")
    for name in ("guard", "watermark", "config"):
        with pytest.raises(AttributeError):
            setattr(pipeline, name, None)
    with pytest.raises(AttributeError):
        pipeline.guard.threshold = 0.99
    assert pipeline.guard.threshold == G.DEFAULT_THRESHOLD


def test_a_hand_built_copied_or_foreign_source_is_refused(pipeline, source, obama):
    from masquerade._stages.swap_mesh import MeshSwapper

    analyser_face = source.faces[0]
    forged = PreparedSource(source.faces, MeshSwapper(ALL.swap).prepare([(obama, analyser_face)]))
    copied = dataclasses.replace(source)
    for bad in (forged, copied, object()):
        with pytest.raises(UsageError, match="prepare_source"):
            pipeline.swap_image(obama, bad)  # type: ignore[arg-type]
        with pytest.raises(UsageError, match="prepare_source"):
            pipeline.video_stages(bad, 25.0, None)  # type: ignore[arg-type]
    other = Pipeline(ALL)
    with pytest.raises(UsageError, match="prepare_source"):
        other.swap_image(obama, source)


def test_a_refused_source_never_becomes_a_prepared_source(pipeline, astronaut, monkeypatch):
    monkeypatch.setattr(G.ContentGuard, "detect", lambda self, image, *views, **kw: [EXPOSED])
    with pytest.raises(ContentRefused, match="astronaut"):
        pipeline.prepare_source([("astronaut", astronaut)])


def test_swap_image_checks_the_target_with_a_view_around_each_face_it_swaps(pipeline, source, obama, spy):
    image, swapped = pipeline.swap_image(obama, source)
    assert swapped == 1 and spy == [(1, True)]
    assert read_watermark(image).found


def test_render_takes_only_frames_its_analyse_returned_unchanged(pipeline, source, obama):
    analyse, render = pipeline.video_stages(source, 25.0, None)
    fresh = _frames(obama, 3)
    for ctx in fresh:
        ctx.faces = ctx.selected = pipeline.detect_faces(ctx.image)
    with pytest.raises(UsageError, match="analyse"):
        render(fresh[:1])  # never analysed: the guard's sampling never saw it

    done = analyse(fresh[1:])
    assert all(ctx.selected for ctx in done)
    with pytest.raises(ValueError):
        done[0].image[0, 0] = 0  # the pixels the guard passed are the ones swapped
    done[0].image = fresh[0].image  # another picture after the check
    with pytest.raises(UsageError, match="analyse"):
        render(done[:1])
    done[1].selected = done[1].selected + done[1].selected  # faces the guard did not look around
    with pytest.raises(UsageError, match="analyse"):
        render(done[1:])


def test_a_huge_fps_does_not_thin_the_guards_sampling(pipeline, source, obama, spy):
    frames = _frames(obama, 125)
    out = list(pipeline.swap_frames(frames, source, fps=1e6))
    assert len(out) == 125 and all(ctx.swapped == 1 for ctx in out)
    whole = [whole for _, whole in spy]
    assert whole.count(True) == 3  # frames 0, 60 and 120, whatever the frame rate claims


def test_a_refusal_mid_video_stops_before_that_frame_is_swapped(pipeline, source, obama, monkeypatch):
    looks: list[int] = []

    def detect(self, image, faces=(), whole=True, remember=False):
        looks.append(1)
        return [EXPOSED] if len(looks) == 2 else []

    monkeypatch.setattr(G.ContentGuard, "detect", detect)
    seen: list[int] = []
    with pytest.raises(ContentRefused, match="frame 25"):
        for ctx in pipeline.swap_frames(_frames(obama, 40), source, fps=25.0):
            seen.append(ctx.index)
    # Frames come out a batch at a time: the refused frame's batch (and all after it) never does.
    batch = pipeline.frame_batch()
    assert seen == list(range(25 // batch * batch))


# -- what the guard sees ----------------------------------------------------------------------------
def _wall(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    grey = cv2.GaussianBlur(rng.normal(150, 12, (h // 8, w // 8)).astype(np.float32), (0, 0), 2)
    return np.dstack([cv2.resize(grey, (w, h))] * 3).clip(0, 255).astype(np.uint8)


def _faces_seen(detections, box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [d.score for d in detections if d.label in ("FACE_MALE", "FACE_FEMALE")
            and x1 <= d.box[0] + d.box[2] / 2 <= x2 and y1 <= d.box[1] + d.box[3] / 2 <= y2]


def test_the_guard_sees_a_small_person_in_a_large_photo(pipeline, obama):
    """A person an eighth of a 4000x3000 photo high: one 320-px look at the whole photo misses them
    while the face detector finds (and would swap) their face; the guard's views find them."""
    canvas = _wall(3000, 4000)
    width = round(obama.shape[1] * 375 / obama.shape[0])
    person = cv2.resize(obama, (width, 375), interpolation=cv2.INTER_AREA)
    canvas[2200 : 2200 + 375, 2900 : 2900 + person.shape[1]] = person
    faces = pipeline.detect_faces(canvas)
    assert len(faces) == 1
    guard = pipeline.guard
    blob, scale = G.preprocess(canvas)
    whole_once = G.postprocess(guard._session.run(None, {guard._input: blob})[0], scale, 4000, 3000)
    assert not _faces_seen(whole_once, faces[0].bbox)  # the guard as it was: blind to this person
    assert _faces_seen(guard.detect(canvas, faces), faces[0].bbox)  # the view around the face
    assert _faces_seen(guard.detect(canvas), faces[0].bbox)  # the tiles alone, too
