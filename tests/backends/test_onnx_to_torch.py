"""The converter operator by operator against ONNX Runtime (CPU), on single-node graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from masquerade._backends.onnx_to_torch import OPS, UnsupportedOperator, convert  # noqa: E402
from masquerade.errors import ModelError  # noqa: E402

RNG = np.random.default_rng(7)
_ONNX_TYPES = {np.dtype(np.float32): TensorProto.FLOAT, np.dtype(np.int64): TensorProto.INT64,
               np.dtype(np.bool_): TensorProto.BOOL}


def x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, np.int64)


def single(op: str, feeds: dict, consts: dict | None = None, order: list[str] | None = None,
           n_out: int = 1, opset: int = 17, out_type: int = TensorProto.FLOAT, **attrs) -> onnx.ModelProto:
    """One ``op`` node: ``feeds`` become graph inputs, ``consts`` initializers, ``order`` its input list."""
    consts = consts or {}
    names = order if order is not None else [*feeds, *consts]
    outs = [f"y{i}" for i in range(n_out)]
    graph = helper.make_graph(
        [helper.make_node(op, names, outs, **attrs)], op,
        [helper.make_tensor_value_info(k, _ONNX_TYPES[v.dtype], list(v.shape)) for k, v in feeds.items()],
        [helper.make_tensor_value_info(o, out_type, None) for o in outs],
        initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def compare(model: onnx.ModelProto, feeds: dict, atol: float = 1e-5) -> None:
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)
    module = convert(model)
    got = module(*[torch.from_numpy(feeds[name]) for name in module.input_names])
    assert len(got) == len(ref)
    for r, g in zip(ref, got, strict=True):
        g = g.numpy()
        assert g.shape == r.shape, (g.shape, r.shape)
        np.testing.assert_allclose(g.astype(np.float64), r.astype(np.float64), atol=atol, rtol=1e-5)


RESIZE_CASES = [
    # (mode, coordinate mode, nearest mode, scales or None, sizes or None)
    ("linear", "half_pixel", None, [1, 1, 2, 2], None),
    ("linear", "half_pixel", None, [1, 1, 0.5, 0.5], None),
    ("linear", "half_pixel", None, [1, 1, 1.5, 0.75], None),
    ("linear", "pytorch_half_pixel", None, [1, 1, 2, 3], None),
    ("linear", "align_corners", None, [1, 1, 2, 2], None),
    ("linear", "asymmetric", None, [1, 1, 2, 2], None),
    ("linear", "half_pixel", None, None, [2, 3, 13, 7]),
    ("linear", "tf_half_pixel_for_nn", None, [1, 1, 2, 2], None),
    ("nearest", "asymmetric", "floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 2, 2], None),
    ("nearest", "half_pixel", "round_prefer_floor", [1, 1, 0.5, 0.5], None),
    ("nearest", "half_pixel", "round_prefer_ceil", [1, 1, 0.5, 0.5], None),
    ("nearest", "align_corners", "round_prefer_ceil", [1, 1, 3, 1.5], None),
    ("nearest", "asymmetric", "ceil", [1, 1, 1.7, 2], None),
    ("cubic", "half_pixel", None, [1, 1, 2, 2], None),
    ("cubic", "align_corners", None, None, [2, 3, 16, 9]),
]


@pytest.mark.parametrize(("mode", "coord", "nearest", "scales", "sizes"), RESIZE_CASES)
def test_resize(mode: str, coord: str, nearest: str | None, scales: list | None, sizes: list | None) -> None:
    attrs = {"mode": mode, "coordinate_transformation_mode": coord}
    if nearest:
        attrs["nearest_mode"] = nearest
    consts = {"scales": np.array(scales, np.float32)} if scales else {"sizes": i64(*sizes)}
    order = ["x", "", "scales"] if scales else ["x", "", "", "sizes"]
    feeds = {"x": x(2, 3, 10, 8)}
    compare(single("Resize", feeds, consts, order, **attrs), feeds, atol=1e-4)


def test_resize_opset10_and_upsample_are_asymmetric() -> None:
    feeds = {"x": x(1, 2, 5, 6)}
    scales = {"s": np.array([1, 1, 2, 3], np.float32)}
    compare(single("Resize", feeds, scales, opset=10, mode="linear"), feeds)
    compare(single("Upsample", feeds, scales, opset=9, mode="nearest"), feeds)


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_pad_modes_with_uneven_pads(mode: str) -> None:
    feeds = {"x": x(2, 3, 6, 7)}
    pads = {"pads": i64(0, 0, 1, 3, 0, 0, 2, 0), "value": np.array(0.5, np.float32)}
    order = ["x", "pads", "value"] if mode == "constant" else ["x", "pads"]
    consts = pads if mode == "constant" else {"pads": pads["pads"]}
    compare(single("Pad", feeds, consts, order, mode=mode), feeds)


def test_pad_negative_crops() -> None:
    feeds = {"x": x(1, 2, 6, 7)}
    compare(single("Pad", feeds, {"pads": i64(0, 0, -1, 2, 0, 0, 1, -2)}), feeds)


@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "pads": [0, 1, 2, 1], "strides": [2, 1]},
        {"kernel_shape": [3, 3], "auto_pad": "SAME_UPPER", "strides": [2, 2]},
        {"kernel_shape": [3, 3], "pads": [2, 2, 2, 2], "dilations": [2, 2], "group": 2},
        {"kernel_shape": [1, 1]},
    ],
)
def test_conv_variants(attrs: dict) -> None:
    group = attrs.get("group", 1)
    k = attrs["kernel_shape"][0]
    feeds = {"x": x(2, 4, 9, 10)}
    consts = {"w": x(6, 4 // group, k, k), "b": x(6)}
    compare(single("Conv", feeds, consts, **attrs), feeds, atol=1e-4)


@pytest.mark.parametrize("pads", [[1, 1, 1, 1], [0, 1, 1, 0]])
def test_conv_transpose(pads: list[int]) -> None:
    feeds = {"x": x(1, 4, 5, 6)}
    consts = {"w": x(4, 3, 4, 4), "b": x(3)}
    compare(single("ConvTranspose", feeds, consts, kernel_shape=[4, 4], strides=[2, 2], pads=pads), feeds,
            atol=1e-4)


@pytest.mark.parametrize(
    ("op", "attrs"),
    [
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("MaxPool", {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
        ("MaxPool", {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}),
        ("AveragePool", {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
        ("AveragePool", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}),
        ("AveragePool", {"kernel_shape": [2, 3], "pads": [0, 1, 1, 2]}),
        ("GlobalAveragePool", {}),
        ("GlobalMaxPool", {}),
    ],
)
def test_pools(op: str, attrs: dict) -> None:
    feeds = {"x": x(2, 3, 9, 8)}
    compare(single(op, feeds, **attrs), feeds)


def test_norms_and_activations() -> None:
    c = 5
    feeds = {"x": x(2, c, 6, 7)}
    bn = {"s": x(c), "b": x(c), "m": x(c), "v": np.abs(x(c)) + 0.5}
    compare(single("BatchNormalization", feeds, bn, epsilon=1e-3), feeds)
    compare(single("InstanceNormalization", feeds, {"s": x(c), "b": x(c)}), feeds, atol=1e-4)
    compare(single("LayerNormalization", feeds, {"s": x(7), "b": x(7)}, axis=-1), feeds, atol=1e-4)
    compare(single("PRelu", feeds, {"slope": x(c, 1, 1)}), feeds)
    for op, attrs in [("LeakyRelu", {"alpha": 0.2}), ("Relu", {}), ("Sigmoid", {}), ("Tanh", {}),
                      ("Erf", {}), ("Elu", {}), ("HardSigmoid", {}), ("Softplus", {}), ("Neg", {}),
                      ("Abs", {}), ("Exp", {})]:
        compare(single(op, feeds, **attrs), feeds)
    compare(single("Clip", feeds, {"lo": np.float32(-0.5), "hi": np.float32(0.7)}), feeds)
    compare(single("Clip", feeds, opset=6, min=-0.2, max=0.3), feeds)


@pytest.mark.parametrize(("axis", "opset"), [(-1, 13), (1, 11), (2, 13)])
def test_softmax(axis: int, opset: int) -> None:
    feeds = {"x": x(2, 3, 4)}
    compare(single("Softmax", feeds, opset=opset, axis=axis), feeds)


def test_shape_and_indexing_ops() -> None:
    a = x(2, 3, 4, 5)
    feeds = {"x": a}
    steps = {"s": i64(-1, 1), "e": i64(-100, 4), "a": i64(1, 3), "st": i64(-1, 2)}
    compare(single("Slice", feeds, steps), feeds)
    compare(single("Slice", feeds, {"s": i64(0), "e": i64(9999), "a": i64(2)}), feeds)
    compare(single("Split", feeds, {"split": i64(2, 3)}, n_out=2, axis=3), feeds)
    six = {"x": x(2, 6)}
    compare(single("Split", six, n_out=3, opset=13, axis=1), six)
    compare(single("Gather", feeds, {"i": i64(-1, 0)}, axis=1), feeds)
    compare(single("Gather", feeds, {"i": np.array(2, np.int64)}, axis=3), feeds)
    compare(single("Transpose", feeds, perm=[0, 2, 3, 1]), feeds)
    compare(single("Flatten", feeds, axis=2), feeds)
    compare(single("Squeeze", {"x": x(1, 3, 1, 2)}, {"a": i64(2)}), {"x": a[:1, :, :1, :2].copy()})
    compare(single("Unsqueeze", feeds, {"a": i64(-1, 0)}), feeds)
    col = {"x": x(3, 1)}
    compare(single("Expand", col, {"s": i64(2, 1, 4)}), col)
    compare(single("Tile", feeds, {"r": i64(1, 2, 1, 3)}), feeds)
    deep, wide = {"x": x(1, 8, 3, 4)}, {"x": x(1, 2, 4, 6)}
    compare(single("DepthToSpace", deep, blocksize=2, mode="DCR"), deep)
    compare(single("DepthToSpace", deep, blocksize=2, mode="CRD"), deep)
    compare(single("SpaceToDepth", wide, blocksize=2), wide)
    compare(single("Shape", feeds, out_type=TensorProto.INT64, start=1), feeds)
    pair = {"x": a, "z": x(2, 1, 4, 5)}
    compare(single("Concat", pair, axis=1), pair)


def test_math_reductions_and_gemm() -> None:
    a, b = x(2, 3, 4), x(2, 3, 4)
    feeds = {"a": a, "b": b}
    for op in ("Add", "Sub", "Mul", "Div", "Max", "Min"):
        compare(single(op, feeds), feeds)
    compare(single("Pow", {"a": np.abs(a) + 0.1}, {"e": np.float32(1.7)}), {"a": np.abs(a) + 0.1})
    compare(single("Sqrt", {"a": np.abs(a)}), {"a": np.abs(a)})
    mm = {"a": a, "b": x(2, 4, 5)}
    compare(single("MatMul", mm), mm)
    compare(single("ReduceMean", {"a": a}, axes=[1, 2], keepdims=1), {"a": a})
    compare(single("ReduceSum", {"a": a}, {"ax": i64(-1)}, keepdims=0), {"a": a})
    compare(single("ReduceMean", {"a": a}, {"ax": i64(0)}, opset=18), {"a": a})
    compare(single("ReduceMax", {"a": a}, axes=[2], keepdims=0), {"a": a})
    compare(single("ReduceL2", {"a": a}, axes=[1]), {"a": a})
    m = x(3, 4)
    compare(single("Gemm", {"a": m}, {"b": x(5, 4), "c": x(5)}, transB=1, alpha=0.5, beta=2.0), {"a": m})
    compare(single("Gemm", {"a": m.T.copy()}, {"b": x(4, 6)}, transA=1), {"a": m.T.copy()})


def test_where_equal_cast_constant_of_shape_range() -> None:
    a = np.round(x(2, 3) * 2).astype(np.float32)
    cond = single("Equal", {"a": a}, {"z": np.float32(0.0)}, out_type=TensorProto.BOOL)
    compare(cond, {"a": a})
    compare(single("Where", {"c": a > 0, "a": a}, {"b": np.float32(-9.0)}), {"c": a > 0, "a": a})
    compare(single("Cast", {"a": a}, out_type=TensorProto.INT64, to=TensorProto.INT64), {"a": a})
    value = numpy_helper.from_array(np.array([1.5], np.float32))
    compare(single("ConstantOfShape", {"s": i64(2, 3)}, value=value), {"s": i64(2, 3)})
    start = {"s": np.array(2, np.int64)}
    limits = {"l": np.array(9, np.int64), "d": np.array(3, np.int64)}
    compare(single("Range", start, limits, out_type=TensorProto.INT64), start)


def test_selection_and_scatter_ops() -> None:
    a = x(3, 7)
    topk = single("TopK", {"a": a}, {"k": i64(3)}, n_out=2, axis=1)
    topk.graph.output[1].type.tensor_type.elem_type = TensorProto.INT64
    compare(topk, {"a": a})
    compare(single("ArgMin", {"a": a}, out_type=TensorProto.INT64, axis=1, keepdims=0), {"a": a})
    idx = {"i": np.array([[0, 6, -1], [2, 2, 3], [1, 0, 5]], np.int64), "u": x(3, 3)}
    compare(single("ScatterElements", {"a": a}, idx, axis=1), {"a": a})
    compare(single("ScatterElements", {"a": a}, {"i": i64(0, 1, 2, 0).reshape(1, 4), "u": x(1, 4)}, axis=0,
                   reduction="add"), {"a": a})
    compare(single("ScatterND", {"a": a}, {"i": np.array([[1], [-1]], np.int64), "u": x(2, 7)}), {"a": a})
    hot = {"i": np.array([[1, 3], [0, -1]], np.int64)}
    depth_values = {"d": np.array(4, np.int64), "v": np.array([0.5, 2.0], np.float32)}
    compare(single("OneHot", hot, depth_values, axis=1), hot)


def test_seeded_noise_repeats_and_is_not_folded() -> None:
    model = single("RandomNormalLike", {"a": x(64, 64)}, seed=3.0, mean=1.0, scale=2.0)
    module = convert(model)
    a = torch.zeros(64, 64)
    first, second = module(a)[0], module(a)[0]
    assert torch.equal(first, second)
    assert abs(float(first.mean()) - 1.0) < 0.15 and abs(float(first.std()) - 2.0) < 0.15


def test_grid_sample() -> None:
    feeds = {"x": x(2, 3, 8, 9), "g": np.clip(x(2, 5, 6, 2), -1.2, 1.2)}
    for mode, pad in (("bilinear", "zeros"), ("nearest", "border"), ("bilinear", "reflection")):
        compare(single("GridSample", feeds, mode=mode, padding_mode=pad, align_corners=0), feeds, atol=1e-4)


def test_every_listed_operator_is_registered() -> None:
    wanted = [
        "Conv", "ConvTranspose", "BatchNormalization", "InstanceNormalization", "Relu", "LeakyRelu",
        "PRelu", "Sigmoid", "Tanh", "Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "ReduceMean", "ReduceSum",
        "MatMul", "Gemm", "Flatten", "Reshape", "Transpose", "Concat", "Slice", "Split", "Squeeze",
        "Unsqueeze", "Shape", "Gather", "Constant", "ConstantOfShape", "Cast", "Pad", "Resize", "Upsample",
        "MaxPool", "AveragePool", "GlobalAveragePool", "Softmax", "Clip", "Erf", "Identity", "Expand",
        "Where", "Equal"
    ]
    assert [op for op in wanted if op not in OPS] == []


def test_unsupported_operators_are_named() -> None:
    model = single("NonMaxSuppression", {"b": x(1, 4, 4), "s": x(1, 1, 4)}, out_type=TensorProto.INT64)
    model.graph.node.append(helper.make_node("FusedConv", ["b"], ["z"], domain="com.microsoft"))
    with pytest.raises(UnsupportedOperator, match="NonMaxSuppression") as info:
        convert(model)
    assert "com.microsoft.FusedConv" in str(info.value)
    assert isinstance(info.value, ModelError)


def test_constant_nodes_are_folded() -> None:
    """Weight arithmetic on constants runs once at conversion, not per call."""
    w = x(4, 3)
    nodes = [helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.float32(2.0))),
             helper.make_node("Mul", ["w", "k"], ["w2"]), helper.make_node("MatMul", ["a", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "fold", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    module = convert(model)
    assert [n.op_type for n in module.nodes] == ["MatMul"]
    a = x(2, 4)
    np.testing.assert_allclose(module(torch.from_numpy(a))[0].numpy(), a @ (w * 2), rtol=1e-5)


def test_batch_norm_after_conv_is_merged_into_it() -> None:
    c = 6
    feeds = {"x": x(2, 3, 9, 9)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "sh", "m", "v"], ["y"], epsilon=1e-3)]
    inits = {"w": x(c, 3, 3, 3), "b": x(c), "s": x(c), "sh": x(c), "m": x(c), "v": np.abs(x(c)) + 0.1}
    source = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 9, 9])
    graph = helper.make_graph(nodes, "conv_bn", [source],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    assert [n.op_type for n in convert(model).nodes] == ["Conv"]
    compare(model, feeds, atol=1e-4)
