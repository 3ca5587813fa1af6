"""Paste-back adds no error of its own: identity and flat-colour stand-in swappers on real photos."""

from __future__ import annotations

import numpy as np
import pytest
from neural_support import face, native_scale_image, session

from masquerade._stages.paste import box_mask, frame_mask, mesh_mask, paste_back
from masquerade._stages.recognize_arcface import ArcFaceRecognizer
from masquerade._stages.swap_neural import NeuralSwapper
from masquerade.config import SwapOptions
from masquerade.geometry.align import crop_affine, transform_points
from masquerade.models.manifest import get_spec
from masquerade.models.standins import arcface, swapper


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> ArcFaceRecognizer:
    arc = session(tmp_path_factory.mktemp("arc"), "w600k", arcface())
    return ArcFaceRecognizer(arc, get_spec("w600k_r50"))


def _swapper(tmp_path, recognizer, mode="identity", model="inswapper_128", **options):
    hyper = model.startswith("hyperswap")
    size = get_spec(model).size_px
    colour = (-1.0, 1.0, -1.0) if hyper else (0.0, 1.0, 0.0)
    graph = swapper(size, mode, colour_rgb=colour, hyperswap=hyper)
    opts = SwapOptions(swapper=model, **options)
    return NeuralSwapper(session(tmp_path, model, graph), get_spec(model), opts, recognizer)


def _identity_figures(image, out, target_face, swap):
    """Max / mean absolute difference where the mask is > 0, pixels changed, and max change outside."""
    _, affine = swap.crops(image, [target_face])
    placed = frame_mask(swap.mask(target_face, affine[0]), affine[0], image.shape)
    (x1, y1, x2, y2), roi_mask = placed
    inside = np.zeros(image.shape[:2], bool)
    inside[y1:y2, x1:x2] = roi_mask > 0
    diff = np.abs(out.astype(np.int16) - image.astype(np.int16))
    return diff[inside].max(), diff[inside].mean(), int((diff.max(axis=2) > 0).sum()), diff[~inside].max()


def test_box_mask_is_exactly_zero_on_the_edge_and_one_inside():
    m = box_mask(128)
    assert m.dtype == np.float32 and m.shape == (128, 128)
    assert m[0].max() == 0 and m[:, -1].max() == 0 and m[:5].max() == 0
    assert m[64, 64] == 1.0 and m[25:103, 25:103].min() == 1.0
    np.testing.assert_array_equal(m, m.T)
    np.testing.assert_array_equal(m, m[::-1, ::-1])
    assert np.all(np.diff(m[64, :64]) >= 0)


@pytest.mark.parametrize("model", ["inswapper_128", "hyperswap_1a_256"])
def test_identity_swap_at_native_scale_changes_nothing_outside_and_under_one_level_inside(
    tmp_path, recognizer, obama, model
):
    image, target = native_scale_image(obama, "obama", model)
    swap = _swapper(tmp_path, recognizer, "identity", model)
    src = swap.prepare([(image, target)])
    out = swap.swap(image, target, src)
    _, mean_in, changed, max_out = _identity_figures(image, out, target, swap)
    assert max_out == 0
    assert mean_in < 1.0
    assert changed < 0.8 * (swap.crop_size**2)


def test_identity_swap_of_a_large_face_pixel_boost_recovers_the_detail(tmp_path, recognizer, obama):
    target = face("obama")  # ~106 px between the eyes: 3x the 128 crop's scale
    figures = {}
    for boost in (None, 256, 512):
        swap = _swapper(tmp_path, recognizer, "identity", pixel_boost=boost)
        out = swap.swap(obama, target, swap.prepare([(obama, target)]))
        figures[boost] = _identity_figures(obama, out, target, swap)
        assert figures[boost][3] == 0  # nothing outside the paste region, whatever the boost
    means = [figures[b][1] for b in (None, 256, 512)]
    assert means[0] > means[1] > means[2]
    assert means[2] < 1.0


def test_flat_colour_lands_on_the_right_face_inside_the_mask(tmp_path, recognizer, obama, biden):
    # Two people side by side; only the one on the right is swapped.
    h = min(obama.shape[0], biden.shape[0])
    pair = np.ascontiguousarray(np.concatenate([obama[:h], biden[:h]], axis=1))
    right = face("biden", offset=(obama.shape[1], 0))
    swap = _swapper(tmp_path, recognizer, "flat")
    out = swap.swap(pair, right, swap.prepare([(obama, face("obama"))]))
    changed = np.any(out != pair, axis=2)
    _, affine = swap.crops(pair, [right])
    (x1, y1, x2, y2), roi_mask = frame_mask(swap.mask(right, affine[0]), affine[0], pair.shape)
    inside = np.zeros(pair.shape[:2], bool)
    inside[y1:y2, x1:x2] = roi_mask > 0
    full = np.zeros(pair.shape[:2], bool)
    full[y1:y2, x1:x2] = roi_mask >= 1.0
    assert changed.any() and not (changed & ~inside).any()
    assert not changed[:, : obama.shape[1]].any()
    # Where the mask is 1 the output is the stand-in's colour exactly: pure green in BGR.
    np.testing.assert_array_equal(out[full], np.broadcast_to([0, 255, 0], out[full].shape))
    # And it is centred on that face's key points.
    ys, xs = np.nonzero(full)
    centre = right.kps5.mean(axis=0)
    assert abs(xs.mean() - centre[0]) < 0.1 * right.width and abs(ys.mean() - centre[1]) < 0.15 * right.height


def test_hyperswap_output_range_maps_to_the_colour(tmp_path, recognizer, obama):
    swap = _swapper(tmp_path, recognizer, "flat", "hyperswap_1b_256")
    target = face("obama")
    out = swap.swap(obama, target, swap.prepare([(obama, target)]))
    c = target.kps5.mean(axis=0).astype(int)
    np.testing.assert_array_equal(out[c[1], c[0]], [0, 255, 0])


def test_mesh_mask_follows_the_face_outline(tmp_path, recognizer, obama):
    target = face("obama")
    # A synthetic 468-point "mesh": an ellipse around the key points (the hull is what counts).
    t = np.linspace(0, 2 * np.pi, 468, endpoint=False)
    centre = target.kps5.mean(axis=0)
    lm = np.stack([centre[0] + 80 * np.cos(t), centre[1] + 110 * np.sin(t), np.zeros_like(t)], axis=1)
    meshed = target.with_(landmarks=lm)
    box_swap = _swapper(tmp_path, recognizer, "flat")
    mesh_swap = _swapper(tmp_path, recognizer, "flat", mask="mesh")
    src = box_swap.prepare([(obama, target)])
    by_box = np.any(box_swap.swap(obama, meshed, src) != obama, axis=2)
    by_mesh = np.any(mesh_swap.swap(obama, meshed, src) != obama, axis=2)
    assert 0 < by_mesh.sum() < 0.8 * by_box.sum()
    ys, xs = np.nonzero(by_mesh)
    assert (((xs - centre[0]) / 80.5) ** 2 + ((ys - centre[1]) / 110.5) ** 2).max() <= 1.0
    # Without landmarks the mesh option falls back to the box.
    np.testing.assert_array_equal(mesh_swap.swap(obama, target, src), box_swap.swap(obama, target, src))


def test_mesh_mask_is_zero_outside_the_hull():
    affine = crop_affine(face("obama").kps5, get_spec("inswapper_128").template, 128)
    t = np.linspace(0, 2 * np.pi, 100, endpoint=False)
    lm = np.stack([490 + 60 * np.cos(t), 270 + 60 * np.sin(t)], axis=1)
    m = mesh_mask(lm, affine, 128)
    hull = transform_points(lm, affine)
    c, r = hull.mean(axis=0), np.linalg.norm(hull - hull.mean(axis=0), axis=1).mean()
    yy, xx = np.mgrid[:128, :128] + 0.0
    assert m[np.hypot(xx - c[0], yy - c[1]) > r + 1].max() == 0
    assert m[int(c[1]), int(c[0])] == 1.0


def test_paste_back_off_frame_and_at_the_edge():
    frame = np.random.default_rng(0).integers(0, 256, (100, 120, 3)).astype(np.uint8)
    crop = np.full((128, 128, 3), 255.0, np.float32)
    template = get_spec("inswapper_128").template
    far = crop_affine(np.asarray(template) + 5000, template, 128)
    np.testing.assert_array_equal(paste_back(frame, crop, box_mask(128), far), frame)
    # A crop hanging over the top-left corner: only its visible part changes.
    corner = crop_affine(np.asarray(template) - 60, template, 128)
    out = paste_back(frame, crop, box_mask(128), corner)
    assert out.shape == frame.shape
    assert (out[:5, :5] == 255).all() and (out[80:, 80:] == frame[80:, 80:]).all()
