"""Small ONNX stand-ins with exactly the I/O contracts of the real models, for tests and benchmarks.

The real weights cannot be shipped or downloaded in CI. These graphs take and give the same tensor
names, shapes and dtypes as the files the registry pins (inswapper's ``emap`` is the last
initializer; SCRFD has its nine outputs in the real order), and compute something simple and known:
an identity, a flat colour, an encoding chosen by the caller, or a random-weight network with the
real architecture's size (for timing only).

Builders return ``onnx.ModelProto``; ``to_bytes`` serialises one for ``onnxruntime.InferenceSession``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
FLOAT = TensorProto.FLOAT


def to_bytes(model: onnx.ModelProto) -> bytes:
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _model(
    nodes: list, inputs: list, outputs: list, inits: Sequence[TensorProto] = (), name: str = "standin"
):
    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _const(name: str, array: NDArray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), name)


def _zero_of(inp: str, out: str, nodes: list, dtype: int = FLOAT) -> None:
    """``out`` = 0 (scalar-broadcastable) computed from ``inp``, so every input stays part of the graph."""
    nodes.append(helper.make_node("ReduceMean", [inp], [out + "_m"], keepdims=0))
    if dtype != FLOAT:
        nodes.append(helper.make_node("Cast", [out + "_m"], [out + "_c"], to=FLOAT))
        src = out + "_c"
    else:
        src = out + "_m"
    nodes.append(helper.make_node("Mul", [src, "zero"], [out]))


def _conv_chain(inp: str, out: str, nodes: list, inits: list, noise: float, seed: int) -> None:
    """Three 3x3 convolutions (3 -> 8 -> 8 -> 3 channels, ReLU between) close to the identity.

    The first three channels carry the picture through; the other five and every kernel get random
    weights of size ``noise``, so int8 quantisation has real work to do and a small, measurable error.
    """
    rng = np.random.default_rng(seed)
    shapes = [(8, 3), (8, 8), (3, 8)]
    last = inp
    for i, (c_out, c_in) in enumerate(shapes):
        weight = (rng.standard_normal((c_out, c_in, 3, 3)) * noise).astype(np.float32)
        for c in range(3):
            weight[c, c, 1, 1] += 1.0
        inits += [_const(f"conv{i}_w", weight), _const(f"conv{i}_b", np.zeros(c_out, np.float32))]
        name = out if i == len(shapes) - 1 else f"conv{i}"
        nodes.append(helper.make_node("Conv", [last, f"conv{i}_w", f"conv{i}_b"], [name], pads=[1, 1, 1, 1]))
        if i < len(shapes) - 1:
            nodes.append(helper.make_node("Relu", [name], [f"relu{i}"]))
            name = f"relu{i}"
        last = name


def swapper(
    size: int = 128,
    mode: str = "identity",
    colour_rgb: Sequence[float] = (0.0, 1.0, 0.0),
    hyperswap: bool = False,
    seed: int = 0,
) -> onnx.ModelProto:
    """inswapper (``hyperswap=False``: target, source -> output in [0, 1], emap last initializer) or
    hyperswap (source, target -> output in [-1, 1], mask) stand-in.

    ``mode="identity"`` returns the target unchanged; ``"flat"`` paints ``colour_rgb`` (in the model's
    output range) over the whole crop; ``"conv"`` returns the target through three near-identity
    convolutions (something for int8 quantisation to work on). The source embedding is used (times
    zero) so it stays an input.
    """
    target = helper.make_tensor_value_info("target", FLOAT, [1, 3, size, size])
    source = helper.make_tensor_value_info("source", FLOAT, [1, 512])
    output = helper.make_tensor_value_info("output", FLOAT, [1, 3, size, size])
    inits = [_const("zero", np.float32(0.0))]
    nodes: list = []
    _zero_of("source", "src0", nodes)
    if mode == "identity":
        nodes.append(helper.make_node("Add", ["target", "src0"], ["output"]))
    elif mode == "conv":
        _conv_chain("target", "t0", nodes, inits, noise=0.02, seed=seed)
        nodes.append(helper.make_node("Add", ["t0", "src0"], ["output"]))
    elif mode == "flat":
        inits.append(_const("colour", np.asarray(colour_rgb, np.float32).reshape(1, 3, 1, 1)))
        nodes.append(helper.make_node("Mul", ["target", "zero"], ["t0"]))
        nodes.append(helper.make_node("Add", ["t0", "colour"], ["t1"]))
        nodes.append(helper.make_node("Add", ["t1", "src0"], ["output"]))
    else:
        raise ValueError(f"unknown stand-in mode {mode!r}")
    if hyperswap:
        mask = helper.make_tensor_value_info("mask", FLOAT, [1, 1, size, size])
        nodes.append(helper.make_node("ReduceMean", ["output"], ["m0"], axes=[1], keepdims=1))
        nodes.append(helper.make_node("Mul", ["m0", "zero"], ["m1"]))
        inits.append(_const("one", np.float32(1.0)))
        nodes.append(helper.make_node("Add", ["m1", "one"], ["mask"]))
        return _model(nodes, [source, target], [output, mask], inits, "hyperswap_standin")
    rng = np.random.default_rng(seed)
    inits.append(_const("emap", (rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)))
    return _model(nodes, [target, source], [output], inits, "inswapper_standin")


def image_model(
    size: int = 512,
    mode: str = "identity",
    colour: Sequence[float] = (0.0, 1.0, 0.0),
    codeformer: bool = False,
) -> onnx.ModelProto:
    """GFPGAN (input -> output) or CodeFormer (input, weight float64 -> output) stand-in, range [-1, 1].

    ``mode``: ``"identity"``, ``"flat"`` (``colour`` everywhere) or ``"conv"`` (see :func:`swapper`).
    """
    inp = helper.make_tensor_value_info("input", FLOAT, [1, 3, size, size])
    out = helper.make_tensor_value_info("output", FLOAT, [1, 3, size, size])
    inits = [_const("zero", np.float32(0.0))]
    nodes: list = []
    inputs = [inp]
    last = "input"
    if mode == "flat":
        inits.append(_const("colour", np.asarray(colour, np.float32).reshape(1, 3, 1, 1)))
        nodes += [
            helper.make_node("Mul", ["input", "zero"], ["t0"]),
            helper.make_node("Add", ["t0", "colour"], ["t1"]),
        ]
        last = "t1"
    elif mode == "conv":
        _conv_chain("input", "t1", nodes, inits, noise=0.02, seed=1)
        last = "t1"
    if codeformer:
        inputs.append(helper.make_tensor_value_info("weight", TensorProto.DOUBLE, [1]))
        _zero_of("weight", "w0", nodes, TensorProto.DOUBLE)
        nodes.append(helper.make_node("Add", [last, "w0"], ["output"]))
    else:
        nodes.append(helper.make_node("Identity", [last], ["output"]))
    return _model(nodes, inputs, [out], inits, "enhancer_standin")


def arcface(seed: int = 0) -> onnx.ModelProto:
    """w600k_r50 stand-in: [N,3,112,112] -> [N,512], a fixed random projection of 14x14 block means.

    Not an identity model: it tells crops apart by content, so tests can check that alignment
    makes the same face give the same embedding wherever it sits in the frame.
    The first three outputs are the channel means of the crop (R, G, B after normalisation).
    """
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((192, 512)) / np.sqrt(192)).astype(np.float32)
    means = np.zeros((192, 3), np.float32)
    for c in range(3):
        means[c * 64 : (c + 1) * 64, c] = 1.0 / 64  # flattened (3, 8, 8): channel c is rows c*64..c*64+63
    w[:, :3] = means
    inp = helper.make_tensor_value_info("input.1", FLOAT, ["N", 3, 112, 112])
    out = helper.make_tensor_value_info("683", FLOAT, ["N", 512])
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["p"], kernel_shape=[14, 14], strides=[14, 14]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["683"]),
    ]
    return _model(nodes, [inp], [out], [_const("w", w)], "arcface_standin")


SCRFD_STRIDES = (8, 16, 32)
SCRFD_ANCHORS = 2


def scrfd_anchor_centres(size: int, stride: int) -> NDArray[np.float32]:
    """Anchor centres of one stride in SCRFD's order: row-major cells, each cell twice (2 anchors)."""
    n = size // stride
    ys, xs = np.mgrid[:n, :n]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, SCRFD_ANCHORS, axis=0)


def scrfd_encode(
    boxes: NDArray, kps: NDArray, scores: Sequence[float], size: int = 640, stride: int = 16
) -> list[NDArray[np.float32]]:
    """The nine SCRFD outputs (score_8..32, bbox_8..32, kps_8..32) encoding given faces in input pixels.

    Each face is put on the anchor nearest its box centre at ``stride``; distances are stored divided
    by the stride, as the real head does. Every other anchor scores 0.
    """
    outs_s, outs_b, outs_k = [], [], []
    for s in SCRFD_STRIDES:
        centres = scrfd_anchor_centres(size, s)
        sc = np.zeros((len(centres), 1), np.float32)
        bb = np.zeros((len(centres), 4), np.float32)
        kp = np.zeros((len(centres), 10), np.float32)
        if s == stride:
            for box, k, score in zip(
                np.asarray(boxes, np.float32), np.asarray(kps, np.float32), scores, strict=True
            ):
                c = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
                i = int(np.argmin(((centres - c) ** 2).sum(1) + np.where(sc[:, 0] > 0, 1e9, 0)))
                cx, cy = centres[i]
                sc[i] = score
                bb[i] = np.array([cx - box[0], cy - box[1], box[2] - cx, box[3] - cy]) / s
                kp[i] = (k.reshape(5, 2) - centres[i]).reshape(-1) / s
        outs_s.append(sc)
        outs_b.append(bb)
        outs_k.append(kp)
    return outs_s + outs_b + outs_k


def scrfd(outputs: Sequence[NDArray[np.float32]]) -> onnx.ModelProto:
    """det_10g stand-in: input ``input.1`` [1,3,?,?]; returns the given nine tensors (order kept).

    Output names are graph-internal numbers in the real file; these imitate that.
    """
    inp = helper.make_tensor_value_info("input.1", FLOAT, [1, 3, "H", "W"])
    nodes: list = []
    inits = [_const("zero", np.float32(0.0))]
    _zero_of("input.1", "z", nodes)
    outs = []
    for i, arr in enumerate(outputs):
        name = str(448 + i)
        inits.append(_const(f"c{i}", arr.astype(np.float32)))
        nodes.append(helper.make_node("Add", [f"c{i}", "z"], [name]))
        outs.append(helper.make_tensor_value_info(name, FLOAT, list(arr.shape)))
    return _model(nodes, [inp], outs, inits, "scrfd_standin")
