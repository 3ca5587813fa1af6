"""TorchSession against ONNX Runtime (CPU) on stand-ins with the real models' contracts and operators."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

import torch_graphs  # noqa: E402

from masquerade._backends.torch_session import TorchSession, import_torch  # noqa: E402
from masquerade.errors import ModelError, ProviderUnavailable, UsageError  # noqa: E402

STANDINS = {
    "inswapper_128": lambda: torch_graphs.inswapper(),
    "inswapper_128_fp16": lambda: torch_graphs.to_fp16(torch_graphs.inswapper()),
    "hyperswap_1a_256": lambda: torch_graphs.inswapper(256, hyperswap=True),
    "det_10g": torch_graphs.scrfd,
    "w600k_r50": torch_graphs.arcface,
    "gfpgan_1.4": torch_graphs.gfpgan,
}
# Tolerances on outputs of unit scale: fp32 graphs agree to float rounding; fp16 / bf16 keep 11 / 8 bits.
TOLERANCE = {"auto": 1e-4, "fp32": 1e-4, "fp16": 2e-2, "bf16": 8e-2}
HAS_CUDA = torch.cuda.is_available()


def tolerance(name: str, dtype: str) -> float:
    """fp16 files: ONNX Runtime's fp16 kernels round differently from PyTorch's (some accumulate in fp32)."""
    return max(TOLERANCE[dtype], TOLERANCE["fp16"]) if name.endswith("fp16") else TOLERANCE[dtype]
gpu = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")


def feeds_for(model, batch: int = 1, side: int = 160, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    feeds = {}
    for value in model.graph.input:
        dims = [d.dim_value or side for d in value.type.tensor_type.shape.dim]
        dims[0] = batch
        feeds[value.name] = rng.random(dims, dtype=np.float32)
    return feeds


def ort_run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(float(np.abs(x.astype(np.float64) - y.astype(np.float64)).max())
               for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", list(STANDINS))
@pytest.mark.parametrize("dtype", ["auto", "fp16", "bf16"])
def test_standins_match_onnxruntime(name: str, dtype: str) -> None:
    model = STANDINS[name]()
    feeds = feeds_for(model)
    got = TorchSession(model, device="cpu", dtype=dtype).run(None, feeds)
    assert max_diff(got, ort_run(model, feeds)) < tolerance(name, dtype)


@pytest.mark.parametrize("name", ["inswapper_128", "hyperswap_1a_256", "w600k_r50", "gfpgan_1.4"])
def test_batch_of_eight_equals_eight_single_runs(name: str) -> None:
    """The files pin batch 1 (inputs, Reshape constants); the converted graph takes any batch."""
    model = STANDINS[name]()
    side = 64 if name == "gfpgan_1.4" else 160
    feeds = feeds_for(model, batch=8, side=side, seed=1)
    session = TorchSession(model, device="cpu")
    batched = session.run_batch(feeds)
    singles = [session.run(None, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(8)]
    for j, out in enumerate(batched):
        assert out.shape[0] == 8
        np.testing.assert_allclose(out, np.concatenate([s[j] for s in singles]), atol=1e-5)
    first = ort_run(model, {k: v[:1] for k, v in feeds.items()})
    assert max_diff([o[:1] for o in batched], first) < 1e-4


def test_scrfd_batch_stacks_each_images_rows() -> None:
    """det_10g flattens its heads to [rows, C]: a batch returns the images' rows one after another."""
    model = torch_graphs.scrfd()
    feeds = feeds_for(model, batch=3, side=96)
    session = TorchSession(model, device="cpu")
    batched = session.run_batch(feeds, max_batch=2)
    for j, out in enumerate(batched):
        per_image = [ort_run(model, {"input.1": feeds["input.1"][i : i + 1]})[j] for i in range(3)]
        np.testing.assert_allclose(out, np.concatenate(per_image), atol=1e-4)


def test_channels_last_changes_nothing() -> None:
    model = torch_graphs.inswapper()
    feeds = feeds_for(model, batch=2)
    a = TorchSession(model, device="cpu", channels_last=True).run(None, feeds)
    b = TorchSession(model, device="cpu", channels_last=False).run(None, feeds)
    assert max_diff(a, b) < 1e-5


def test_onnxruntime_surface(tmp_path) -> None:
    model = torch_graphs.inswapper(256, hyperswap=True)
    path = tmp_path / "hyperswap.onnx"
    path.write_bytes(model.SerializeToString())
    session = TorchSession(path, device="cpu")
    assert session._model_path == str(path)  # the swap stage reads the emap from there
    inputs = session.get_inputs()
    assert [(i.name, i.shape, i.type) for i in inputs] == [
        ("source", ["N", 512], "tensor(float)"), ("target", ["N", 3, 256, 256], "tensor(float)")]
    assert [o.name for o in session.get_outputs()] == ["output", "mask"]
    feeds = feeds_for(model)
    (mask,) = session.run(["mask"], feeds)
    assert mask.shape == (1, 1, 256, 256) and mask.dtype == np.float32
    with pytest.raises(UsageError, match="target"):
        session.run(None, {"source": feeds["source"]})
    with pytest.raises(UsageError, match="nope"):
        session.run(["nope"], feeds)


def test_a_graph_whose_batch_cannot_vary_says_so() -> None:
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "s"], ["y"])], "fixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])],
        initializer=[numpy_helper.from_array(np.array([8], np.int64), "s")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = TorchSession(model, device="cpu")
    assert session.run(None, {"x": np.ones((1, 4, 2), np.float32)})[0].shape == (8,)
    with pytest.raises(ModelError, match=r"\(3, 4, 2\)"):
        session.run_batch({"x": np.ones((3, 4, 2), np.float32)})
    assert session.run_batch({"x": np.ones((3, 4, 2), np.float32)}, max_batch=1)[0].shape == (24,)


@pytest.mark.skipif(HAS_CUDA, reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu_is_refused_not_run_on_cpu() -> None:
    with pytest.raises(ProviderUnavailable, match=r"\.\[gpu\]"):
        TorchSession(torch_graphs.arcface(), device="cuda")


def test_missing_torch_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes ``import torch`` raise ImportError
    with pytest.raises(ProviderUnavailable, match=r"pip install '\.\[gpu\]'"):
        import_torch()


def test_bad_options_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="dtype"):
        TorchSession(torch_graphs.arcface(), device="cpu", dtype="fp8")
    with pytest.raises(UsageError, match="device"):
        TorchSession(torch_graphs.arcface(), device="tpu")


def test_stages_take_the_session_in_place_of_onnxruntime(tmp_path, obama) -> None:
    """The swap stage, fed a TorchSession, gives the frame the ORT session gives (within one level)."""
    from masquerade._stages.recognize_arcface import ArcFaceRecognizer
    from masquerade._stages.swap_neural import NeuralSwapper
    from masquerade.config import SwapOptions
    from masquerade.models.manifest import get_spec
    from masquerade.types import Face

    kps = np.array([[442.77, 215.61], [548.54, 214.40], [496.69, 277.40], [432.88, 319.42], [558.78, 318.12]])
    target = Face(bbox=np.array([373, 127, 614, 421], np.float32), kps5=kps)
    paths = {}
    for name, model in (("arc", torch_graphs.arcface()), ("swap", torch_graphs.inswapper())):
        paths[name] = tmp_path / f"{name}.onnx"
        paths[name].write_bytes(model.SerializeToString())
    frames = []
    for make in (lambda p: ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]),
                 lambda p: TorchSession(p, device="cpu")):
        recognizer = ArcFaceRecognizer(make(paths["arc"]), get_spec("w600k_r50"))
        swapper = NeuralSwapper(make(paths["swap"]), get_spec("inswapper_128"), SwapOptions(), recognizer)
        source = swapper.prepare([(obama, target)])
        frames.append(swapper.swap_many(obama, [target, target.with_(kps5=kps + 3)], source))
    changed = np.abs(frames[0].astype(int) - obama.astype(int)).max()
    assert changed > 50  # the stand-in really repaints the face
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).max() <= 1


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_cuda_matches_onnxruntime_cpu(dtype: str) -> None:
    for name, build in STANDINS.items():
        model = build()
        feeds = feeds_for(model, batch=4 if name != "det_10g" else 1)
        got = TorchSession(model, device="cuda", dtype=dtype).run_batch(feeds)
        count = len(next(iter(feeds.values())))
        singles = [ort_run(model, {k: v[i : i + 1] for k, v in feeds.items()}) for i in range(count)]
        ref = [np.concatenate(parts) for parts in zip(*singles, strict=True)]
        assert max_diff(got, ref) < tolerance(name, dtype), name


@pytest.mark.gpu
@gpu
def test_cuda_graphs_through_torch_compile() -> None:
    model = torch_graphs.arcface()
    feeds = feeds_for(model, batch=4)
    plain = TorchSession(model, device="cuda", dtype="fp16").run(None, feeds)
    graphed = TorchSession(model, device="cuda", dtype="fp16", cuda_graphs=True)
    for _ in range(3):  # warm-up runs record the graph; later ones replay it
        out = graphed.run(None, feeds)
    assert max_diff(out, plain) < 1e-2


def test_batch_one_constants_concatenated_to_activations_follow_the_batch() -> None:
    from onnx import TensorProto, helper, numpy_helper

    token = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["x", "t"], ["y"], axis=1)], "tokens",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 6, 3])],
        initializer=[numpy_helper.from_array(token, "t")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.random.default_rng(0).random((5, 4, 3), dtype=np.float32)
    (y,) = TorchSession(model, device="cpu").run_batch({"x": x})
    np.testing.assert_array_equal(y, np.concatenate([x, np.repeat(token, 5, axis=0)], axis=1))


class _ExportedNet(torch.nn.Module):
    """Exporter patterns of real graphs: attention, LayerNorm, reflect pad, GELU (Erf), Shape chains."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.c1, self.bn, self.prelu = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.PReLU(8)
        self.inorm, self.ln = nn.InstanceNorm2d(8, affine=True), nn.LayerNorm(8)
        self.att = nn.MultiheadAttention(8, 2, batch_first=True)
        self.c2, self.fc = nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.Linear(64, 16)

    def forward(self, x, z):
        f = torch.nn.functional
        y = self.prelu(self.bn(self.c1(x)))
        y = self.inorm(f.pad(y, (1, 1, 1, 1), mode="reflect"))[:, :, 1:-1, 1:-1]
        b, c, h, w = y.shape
        t = y.flatten(2).transpose(1, 2)
        t = self.ln(t + self.att(t, t, t)[0])
        y = f.interpolate(t.transpose(1, 2).reshape(b, c, h, w), scale_factor=2, mode="bilinear")
        y = f.avg_pool2d(f.gelu(self.c2(y)) * torch.sigmoid(z.view(-1, 1, 1, 1)), 8)
        return torch.tanh(self.fc(y.reshape(y.size(0), -1))), y.softmax(1)


def test_a_pytorch_export_at_batch_one_runs_batched(tmp_path) -> None:
    torch.manual_seed(0)
    net = _ExportedNet().eval()
    path = tmp_path / "exported.onnx"
    try:
        example = (torch.rand(1, 3, 16, 16), torch.rand(1, 1))
        torch.onnx.export(net, example, str(path), input_names=["x", "z"], output_names=["a", "b"],
                          opset_version=17, dynamo=False)
    except Exception as error:  # the TorchScript exporter is optional in some torch builds
        pytest.skip(f"torch.onnx.export unavailable: {error}")
    rng = np.random.default_rng(0)
    x, z = rng.random((3, 3, 16, 16), dtype=np.float32), rng.random((3, 1), dtype=np.float32)
    session = TorchSession(path, device="cpu")
    onnxrt = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    first = {"x": x[:1], "z": z[:1]}
    assert max_diff(session.run(None, first), onnxrt.run(None, first)) < 1e-5
    with torch.no_grad():
        eager = [t.numpy() for t in net(torch.from_numpy(x), torch.from_numpy(z))]
    assert max_diff(session.run_batch({"x": x, "z": z}), eager) < 1e-5


# -- batches: a graph that cannot batch runs one item per call ------------------------------------
def test_a_graph_that_mixes_batch_items_falls_back_to_one_item_per_call() -> None:
    model = torch_graphs.inswapper_mixing_batches()
    feeds = feeds_for(model, batch=3)
    items = [ort_run(model, {k: v[i : i + 1] for k, v in feeds.items()})[0] for i in range(3)]
    session = TorchSession(model.SerializeToString(), device="cpu")
    (mixed,) = session.run(None, feeds)
    assert float(np.abs(mixed - np.concatenate(items)).max()) > 1e-2  # unchecked, the batch is wrong
    assert session.check_batching("inswapper_128.onnx") is False
    assert session.max_batch == 1
    assert "inswapper_128.onnx" in session.batch_notice and "one face per call" in session.batch_notice
    (fixed,) = session.run_batch(feeds)
    assert float(np.abs(fixed - np.concatenate(items)).max()) < 1e-4


def test_a_graph_that_batches_well_keeps_its_batches() -> None:
    session = TorchSession(torch_graphs.inswapper(), device="cpu")
    assert session.check_batching() is True
    assert session.max_batch is None and session.batch_notice is None


def test_a_graph_that_fails_at_batch_two_falls_back(monkeypatch) -> None:
    session = TorchSession(torch_graphs.arcface(), device="cpu")
    forward = session._forward

    def only_one(*args):
        if args[0].shape[0] > 1:
            raise RuntimeError("shape mismatch: batch-1 tensor")
        return forward(*args)

    monkeypatch.setattr(session, "_forward", only_one)
    assert session.check_batching("w600k_r50.onnx") is False
    assert "fails on a batch of 2" in session.batch_notice
    feeds = feeds_for(torch_graphs.arcface(), batch=3)
    assert session.run(None, feeds)[0].shape[0] == 3  # runs, one item per call


def test_the_run_says_once_that_a_model_runs_one_face_per_call(tmp_path) -> None:
    from masquerade._stages.build import _ModelSessions
    from masquerade.config import RunConfig, RuntimeOptions
    from masquerade.models.store import ModelStore

    path = tmp_path / "mixing.onnx"
    path.write_bytes(torch_graphs.inswapper_mixing_batches().SerializeToString())
    ModelStore(tmp_path / "models").import_file(path, "inswapper_128", allow_unknown_hash=True)
    config = RunConfig(runtime=RuntimeOptions(models_dir=tmp_path / "models", execution_provider="torch-cpu"))
    sessions = _ModelSessions(config, ["inswapper_128"])
    session, _ = sessions.get("inswapper_128")
    sessions.get("inswapper_128")
    assert session.max_batch == 1
    said = [n for n in sessions.notices if "one face per call" in n]
    assert len(said) == 1 and said[0].startswith("inswapper_128.onnx")
