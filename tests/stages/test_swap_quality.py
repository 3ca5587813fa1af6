"""End-to-end quality of the embedded mesh swap on the bundled photos (see benchmarks/quality.py).

Identity is read by dlib's recognizer aligned by dlib's own 5-point predictor (not by the mesh the
swap moves); colour artifacts by ``bench.quality.artifact_share``: the share of face pixels greyer or
bluer for their lightness than both the target's and the source's own face, over the target's own.
Thresholds sit a little below what the swap reaches (the figures measured are in the comments).
"""

from __future__ import annotations

import numpy as np
import pytest

from masquerade._stages import blend
from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.recognize import DlibRecognizer
from masquerade._stages.swap_mesh import MeshSwapper
from masquerade.bench import quality
from masquerade.geometry import mesh

# Source -> target pairs that were broken before: dark or red sources onto the pale astronaut (grey
# brows, grey forehead patches) and the astronaut onto dark or red faces (blue-grey smudges).
PAIRS = (("obama", "astronaut"), ("obama2", "astronaut"), ("biden", "astronaut"),
         ("astronaut", "obama"), ("astronaut", "biden"), ("obama", "biden"), ("biden", "obama2"))


@pytest.fixture(scope="module")
def analyser() -> MeshAnalyser:
    return MeshAnalyser()


@pytest.fixture(scope="module")
def recognizer() -> DlibRecognizer:
    return DlibRecognizer()


@pytest.fixture(scope="module")
def portrait_faces(photos, analyser):
    return {name: analyser.detect(image)[0] for name, image in photos.items()}


@pytest.fixture(scope="module")
def swapper() -> MeshSwapper:
    return MeshSwapper()


@pytest.mark.parametrize(("src", "dst"), PAIRS)
def test_portrait_swap_moves_identity_without_colour_artifacts(
    photos, portrait_faces, analyser, recognizer, swapper, src, dst
) -> None:
    source, target = portrait_faces[src], portrait_faces[dst]
    out = swapper.swap(photos[dst], target, swapper.prepare([(photos[src], source)]))
    (refit,) = analyser.refine(out, [target])
    score = quality.artifact_share(out, photos[dst], target.landmarks, photos[src], source.landmarks,
                                   refit.landmarks)
    assert score < 1.0, (src, dst, score)
    reference = quality.embed_box(recognizer, photos[src], source)
    before = quality.identity_distance(recognizer, photos[dst], target, reference)
    after = quality.identity_distance(recognizer, out, target, reference)
    assert after < before - 0.06, (src, dst, before, after)  # measured: moves of 0.08-0.25


def test_every_face_of_a_group_photo_moves_towards_the_source(photos, group_photo, portrait_faces, analyser,
                                                              recognizer, swapper) -> None:
    image, layout = group_photo
    faces = analyser.detect(image)
    assert len(faces) == len(layout)
    out = swapper.swap_many(image, faces, swapper.prepare([(photos["obama"], portrait_faces["obama"])]))
    reference = quality.embed_box(recognizer, photos["obama"], portrait_faces["obama"])
    before = np.array([quality.identity_distance(recognizer, image, f, reference) for f in faces])
    after = np.array([quality.identity_distance(recognizer, out, f, reference) for f in faces])
    others = before > 0.45  # obama's own faces in the group are already at ~0.05-0.3
    assert others.sum() >= 6
    assert np.all(after[others] < before[others])
    assert before[others].mean() - after[others].mean() > 0.13


def test_no_grey_smudge_between_brows_and_eyes(photos, portrait_faces, analyser, swapper) -> None:
    # The astronaut onto obama: the target's brow tail and grey temple hair on the region's edge (the
    # Poisson boundary), and the source's hair shadow at its temple, once spread a dark grey smudge
    # over the brow and lid on one side (band / cheek lightness 0.52 and 0.62; now ~0.70 and ~0.79).
    out = swapper.swap(photos["obama"], portrait_faces["obama"],
                       swapper.prepare([(photos["astronaut"], portrait_faces["astronaut"])]))
    (refit,) = analyser.refine(out, [portrait_faces["obama"]])
    lm = refit.landmarks[:, :2]
    lightness = blend.to_lab(out)[..., 0]
    cheeks = blend.polygon_mask(out.shape, [lm[[50, 101, 118, 117, 123, 187, 205]],
                                            lm[[280, 330, 347, 346, 352, 411, 425]]])
    skin = float(np.median(lightness[cheeks > 0]))
    sides = ((mesh.RIGHT_EYEBROW, mesh._RIGHT_EYE_UPPER), (mesh.LEFT_EYEBROW, mesh._LEFT_EYE_UPPER))
    for brow, upper in sides:
        band = blend.polygon_mask(out.shape, [np.concatenate([lm[list(brow[:5])], lm[list(upper)][::-1]])])
        assert float(lightness[band > 0].mean()) / skin > 0.64


@pytest.mark.parametrize("scene", ["group_photo", "turned_group"])
def test_small_faces_get_no_grey_edges(request, photos, portrait_faces, analyser, swapper, scene) -> None:
    # obama2 onto the 43-176 px faces of the group photos: the top edge of its black brows came out
    # grey on small pale faces (1.05-1.12 %: the colour floor read the source from its blurred, shrunk
    # copy, in another skin frame than the face is judged in, and put lifted pixels exactly on the
    # bound), and the moved outline of heads turned away showed the backdrop inside the old one
    # (0.85-1.01 %). Measured after: at most 0.12 % (group) and 0.66 % (turned).
    image = request.getfixturevalue(scene)[0]
    faces = analyser.detect(image)
    source = portrait_faces["obama2"]
    out = swapper.swap_many(image, faces, swapper.prepare([(photos["obama2"], source)]))
    refits = analyser.refine(out, faces)
    for i, face in enumerate(faces):
        refit = refits[i].landmarks if len(refits) == len(faces) else None
        score = quality.artifact_share(out, image, face.landmarks, photos["obama2"], source.landmarks, refit)
        assert score <= 0.8, (scene, i, face.size, score)


def test_clip_coverage_tells_flicker_inside_a_face_from_flicker_around_it(photos) -> None:
    # Three frames of a still portrait drifting 2 px a frame, "swapped" by brightening the middle of the
    # face. Noise added only around the face raises the band's flicker and leaves the face's alone.
    import cv2
    import dlib

    photo = photos["obama"]
    frames = [cv2.warpAffine(photo, np.float32([[1, 0, 2 * k], [0, 1, 0]]), photo.shape[1::-1],
                             borderMode=cv2.BORDER_REFLECT) for k in range(3)]
    rects = [dlib.get_frontal_face_detector()(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), 1)[0] for f in frames]
    swapped = []
    for frame, r in zip(frames, rects, strict=True):
        out = frame.copy()
        ys, xs = quality._inner(np.array([r.left(), r.top(), r.right(), r.bottom()]), frame.shape)
        out[ys, xs] = cv2.add(out[ys, xs], (40, 40, 40, 0))
        swapped.append(out)
    calm = quality.clip_coverage(frames, swapped, frames)
    assert (calm.detections, calm.swapped) == (3, 3)
    assert calm.band_flicker_ratio == pytest.approx(1.0, abs=0.01)
    rng = np.random.default_rng(3)
    noisy = []
    for out, r in zip(swapped, rects, strict=True):
        around, ring = quality._band(np.array([r.left(), r.top(), r.right(), r.bottom()], float), out.shape)
        out = out.copy()
        part = out[around]
        part[ring] = np.clip(part[ring] + rng.normal(0, 12, part[ring].shape), 0, 255).astype(np.uint8)
        noisy.append(out)
    shaky = quality.clip_coverage(frames, noisy, frames)
    assert shaky.band_flicker_ratio > 1.5 * calm.band_flicker_ratio
    assert shaky.flicker_ratio == pytest.approx(calm.flicker_ratio, abs=0.01)
