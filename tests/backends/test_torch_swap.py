"""The on-device swap of a whole frame against the CPU stage's crops, model run and paste-back."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import torch_graphs  # noqa: E402

from masquerade._backends.torch_session import TorchSession  # noqa: E402
from masquerade._backends.torch_swap import DeviceSwapper, explode, implode  # noqa: E402
from masquerade._stages import swap_neural  # noqa: E402
from masquerade._stages.recognize_arcface import ArcFaceRecognizer  # noqa: E402
from masquerade.config import SwapOptions  # noqa: E402
from masquerade.errors import UsageError  # noqa: E402
from masquerade.models.manifest import get_spec  # noqa: E402
from masquerade.types import Face  # noqa: E402

KPS = np.array([[442.77, 215.61], [548.54, 214.40], [496.69, 277.40], [432.88, 319.42], [558.78, 318.12]])


def test_implode_explode_match_the_cpu_stage() -> None:
    crops = np.random.default_rng(0).random((2, 12, 12, 3)).astype(np.float32)
    nchw = torch.from_numpy(crops).permute(0, 3, 1, 2)
    tiles = implode(nchw, 3)
    np.testing.assert_array_equal(tiles.permute(0, 2, 3, 1).numpy(), swap_neural.implode(crops, 3))
    np.testing.assert_array_equal(explode(tiles, 3).numpy(), nchw.numpy())


def _swapper_files(tmp_path):
    """The test graphs of ArcFace and inswapper on disk, and an ONNX Runtime recognizer."""
    paths = {}
    for name, model in (("arc", torch_graphs.arcface()), ("swap", torch_graphs.inswapper())):
        paths[name] = tmp_path / f"{name}.onnx"
        paths[name].write_bytes(model.SerializeToString())
    return paths, ArcFaceRecognizer(ort.InferenceSession(str(paths["arc"])), get_spec("w600k_r50"))


@pytest.mark.parametrize("boost", [None, 256])
def test_device_swap_matches_the_cpu_stage(tmp_path, obama, boost) -> None:
    paths, recognizer = _swapper_files(tmp_path)
    spec, options = get_spec("inswapper_128"), SwapOptions(pixel_boost=boost)
    cpu = swap_neural.NeuralSwapper(ort.InferenceSession(str(paths["swap"])), spec, options, recognizer)
    dev = DeviceSwapper(swap_neural.NeuralSwapper(TorchSession(paths["swap"], device="cpu"), spec, options,
                                                  recognizer))
    target = Face(bbox=np.array([373, 127, 614, 421], np.float32), kps5=KPS)
    faces = [target, target.with_(kps5=KPS * 0.9 + [-200, 40]), target.with_(kps5=KPS * 0.25 + [700, 20])]
    source = cpu.prepare([(obama, target)])
    ref = cpu.swap_many(obama, faces, source)
    got = dev.swap_many(obama, faces, source)
    changed = (ref != obama).any(-1)
    assert changed.sum() > 50000
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 3 and diff[changed].mean() < 0.1  # measured: 2 and 0.03
    assert diff[~changed].max() <= 1  # off the faces: untouched, or a rounding step at the mask's rim


def test_device_swapper_needs_a_torch_session(tmp_path) -> None:
    class Fake:
        session = object()

    with pytest.raises(UsageError, match="TorchSession"):
        DeviceSwapper(Fake())


def test_device_enhance_matches_the_cpu_stage(tmp_path, obama) -> None:
    from masquerade._backends.torch_swap import DeviceEnhancer
    from masquerade._stages.enhance import FaceEnhancer

    path = tmp_path / "gfpgan.onnx"
    path.write_bytes(torch_graphs.gfpgan().SerializeToString())
    spec = get_spec("gfpgan_1.4")
    cpu = FaceEnhancer(ort.InferenceSession(str(path)), spec, blend=0.8)
    dev = DeviceEnhancer(FaceEnhancer(TorchSession(path, device="cpu"), spec, blend=0.8))
    target = Face(bbox=np.array([373, 127, 614, 421], np.float32), kps5=KPS)
    ref = cpu.enhance_many(obama, [target])
    got = dev.enhance_many(obama, [target])
    changed = (ref != obama).any(-1)
    assert changed.sum() > 50000
    diff = np.abs(got.astype(int) - ref.astype(int))
    assert diff.max() <= 2 and diff[changed].mean() < 0.05  # measured: 1 and 0.006


def test_device_swap_batch_runs_all_frames_faces_as_one_model_batch(tmp_path, obama, obama2) -> None:
    paths, recognizer = _swapper_files(tmp_path)
    session = TorchSession(paths["swap"], device="cpu")
    swapper = swap_neural.NeuralSwapper(session, get_spec("inswapper_128"), SwapOptions(), recognizer)
    dev = DeviceSwapper(swapper)
    target = Face(bbox=np.array([373, 127, 614, 421], np.float32), kps5=KPS)
    source = dev.prepare([(obama, target)])
    images = [obama, obama2, obama]
    faces = [[target], [], [target, target.with_(kps5=KPS * 0.9 + [-200, 40])]]
    batch_sizes = []
    run_torch = session.run_torch

    def counting(feeds, names=None):
        batch_sizes.append(len(feeds["target"]))
        return run_torch(feeds, names)

    session.run_torch = counting
    batched = dev.swap_batch(images, faces, source)
    assert batch_sizes == [3]  # the three faces of two frames in one model call
    singles = [dev.swap_many(image, fs, source) for image, fs in zip(images, faces, strict=True)]
    for got, want in zip(batched, singles, strict=True):
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # batch vs single float order
    np.testing.assert_array_equal(batched[1], obama2)
