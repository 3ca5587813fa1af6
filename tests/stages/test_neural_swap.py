"""Neural swapper plumbing: source latents, emap, pixel boost, batching and the stand-ins' contracts."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
from neural_support import face, session
from onnx import numpy_helper

from masquerade._stages.recognize_arcface import ArcFaceRecognizer
from masquerade._stages.swap_neural import (
    NeuralSwapper,
    auto_pixel_boost,
    boost_factor,
    explode,
    implode,
    load_emap,
)
from masquerade.config import SwapOptions
from masquerade.errors import ModelError, NoSourceFaceError, UsageError
from masquerade.models.contract import contract_problems, read_contract
from masquerade.models.manifest import get_spec
from masquerade.models.standins import arcface, image_model, scrfd, scrfd_encode, swapper, to_bytes


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory) -> ArcFaceRecognizer:
    arc = session(tmp_path_factory.mktemp("arc"), "w600k", arcface())
    return ArcFaceRecognizer(arc, get_spec("w600k_r50"))


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


class CountingSession:
    """Wraps an ORT session and counts run() calls (to see batching)."""

    def __init__(self, inner):
        self.inner, self.calls = inner, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def run(self, *args, **kwargs):
        self.calls += 1
        return self.inner.run(*args, **kwargs)


def test_inswapper_latent_is_normalised_embedding_times_emap_normalised(tmp_path, recognizer, obama):
    graph = swapper(128, "identity", seed=7)
    sess = session(tmp_path, "inswapper_128", graph)
    swap = NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(), recognizer)
    # The emap was read from the session's file: the graph's last initializer.
    on_disk = onnx.load(str(tmp_path / "inswapper_128.onnx"))
    expected_emap = numpy_helper.to_array(on_disk.graph.initializer[-1])
    np.testing.assert_array_equal(swap.emap, expected_emap)
    np.testing.assert_array_equal(load_emap(tmp_path / "inswapper_128.onnx"), expected_emap)
    target = face("obama")
    src = swap.prepare([(obama, target)])
    raw = recognizer.infer(recognizer.preprocess(recognizer.crops(obama, [target])))[0]
    want = _unit(_unit(raw) @ expected_emap.astype(np.float64))
    assert src.latent.shape == (1, 512) and src.latent.dtype == np.float32
    np.testing.assert_allclose(src.latent[0], want, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(src.latent), 1.0, atol=1e-5)


def test_several_sources_average_their_normalised_embeddings(tmp_path, recognizer, obama, obama2):
    sess = session(tmp_path, "hyperswap_1a_256", swapper(256, hyperswap=True))
    swap = NeuralSwapper(sess, get_spec("hyperswap_1a_256"), SwapOptions(), recognizer)
    a, b = face("obama"), face("obama2")
    src = swap.prepare([(obama, a), (obama2, b)])
    ea, eb = recognizer.embed(obama, a), recognizer.embed(obama2, b)
    want = _unit(_unit(ea) + _unit(eb))
    assert src.count == 2
    np.testing.assert_allclose(src.embedding, want, atol=1e-6)
    # hyperswap takes the normalised embedding itself.
    np.testing.assert_allclose(src.latent[0], want, atol=1e-6)
    with pytest.raises(NoSourceFaceError):
        swap.prepare([])


def test_implode_and_explode_are_exact_inverses():
    rng = np.random.default_rng(0)
    crops = rng.random((3, 512, 512, 3)).astype(np.float32)
    tiles = implode(crops, 4)
    assert tiles.shape == (48, 128, 128, 3)
    # Tile (i, j) of a crop is its pixel-shuffled sub-image crop[i::4, j::4].
    np.testing.assert_array_equal(tiles[16 + 2 * 4 + 3], crops[1, 2::4, 3::4])
    np.testing.assert_array_equal(explode(tiles, 4), crops)
    assert implode(crops, 1) is crops
    assert boost_factor(128, None) == 1 and boost_factor(128, 128) == 1 and boost_factor(128, 512) == 4
    assert boost_factor(256, 512) == 2
    with pytest.raises(UsageError):
        boost_factor(128, 300)


def test_auto_pixel_boost_matches_the_crop_to_the_face_size():
    inswapper, hyperswap = get_spec("inswapper_128"), get_spec("hyperswap_1a_256")
    big = face("obama").kps5  # the 128 crop covers ~392 px of this face: 3.06x too coarse
    assert auto_pixel_boost(big, inswapper) == 512
    assert auto_pixel_boost(face("obama", 0.5).kps5, inswapper) == 256
    assert auto_pixel_boost(big, inswapper, limit=256) == 256
    assert auto_pixel_boost(big, hyperswap) == 512
    assert auto_pixel_boost(face("obama", 0.3).kps5, inswapper) is None


def test_pixel_boost_runs_tile_by_tile_on_a_fixed_batch_graph_and_reassembles(tmp_path, recognizer, obama):
    sess = CountingSession(session(tmp_path, "inswapper_128", swapper(128)))
    swap = NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(pixel_boost=512), recognizer)
    target = face("obama")
    src = swap.prepare([(obama, target)])
    crops, _ = swap.crops(obama, [target])
    assert crops.shape == (1, 512, 512, 3)
    sess.calls = 0
    out = swap.swap_crops(crops, src.latent)
    assert sess.calls == 16  # the real inswapper pins batch 1
    np.testing.assert_allclose(out, crops.astype(np.float32), atol=1e-3)


def test_a_dynamic_batch_graph_runs_all_tiles_of_all_faces_in_one_call(tmp_path, recognizer, obama):
    graph = swapper(128)
    for value in list(graph.graph.input) + list(graph.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    sess = CountingSession(session(tmp_path, "dynamic", graph))
    swap = NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(pixel_boost=256), recognizer)
    faces = [face("obama"), face("obama", 0.5, (10, 500))]
    src = swap.prepare([(obama, faces[0])])
    crops, _ = swap.crops(obama, faces)
    sess.calls = 0
    out = swap.swap_crops(crops, src.latent)
    assert sess.calls == 1 and out.shape == (2, 256, 256, 3)
    np.testing.assert_allclose(out, crops.astype(np.float32), atol=1e-3)


def test_swapper_refuses_a_recognizer_it_was_not_trained_with(tmp_path, recognizer):
    sess = session(tmp_path, "inswapper_128", swapper(128))
    other = ArcFaceRecognizer(recognizer.session, replace(get_spec("w600k_r50"), name="some_other_arcface"))
    with pytest.raises(ModelError, match="w600k_r50"):
        NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(), other)
    with pytest.raises(UsageError):
        NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(pixel_boost=200), recognizer)


@pytest.mark.parametrize(
    "name,graph",
    [
        ("inswapper_128", lambda: swapper(128)),
        ("inswapper_128_fp16", lambda: swapper(128)),
        ("hyperswap_1c_256", lambda: swapper(256, hyperswap=True)),
        ("w600k_r50", arcface),
        ("gfpgan_1.4", lambda: image_model(512)),
        ("codeformer", lambda: image_model(512, codeformer=True)),
        ("det_10g", lambda: scrfd(scrfd_encode(np.zeros((0, 4)), np.zeros((0, 5, 2)), []))),
    ],
)
def test_stand_ins_have_the_registered_contracts(tmp_path, name, graph):
    path = tmp_path / f"{name}.onnx"
    path.write_bytes(to_bytes(graph()))
    assert contract_problems(read_contract(path), get_spec(name).contract) == []


def test_swap_batch_equals_frame_by_frame_one_model_call_per_face(tmp_path, recognizer, obama, obama2):
    sess = CountingSession(session(tmp_path, "inswapper_128", swapper(128, "conv")))
    swap = NeuralSwapper(sess, get_spec("inswapper_128"), SwapOptions(), recognizer)
    source = swap.prepare([(obama2, face("obama2"))])
    images = [obama, obama2, obama]
    faces = [[face("obama")], [], [face("obama"), face("obama", offset=(-300.0, 0.0))]]
    batched = swap.swap_batch(images, faces, source)
    assert sess.calls == 3  # the graph pins batch 1: one run per face, no per-frame overhead beyond that
    singles = [swap.swap_many(image, fs, source) for image, fs in zip(images, faces, strict=True)]
    for got, want in zip(batched, singles, strict=True):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(batched[1], obama2)  # a frame without faces comes back unchanged
    assert batched[1] is not obama2 and not np.array_equal(batched[0], obama)
