"""Small ONNX stand-ins for the converter: the real models' I/O contracts and the operators they use.

Each builder returns an ``onnx.ModelProto`` with random weights (seeded). They are small enough to
run in milliseconds on CPU, yet exercise what the real graphs do: inswapper's reflect pads, hand-written
AdaIN (ReduceMean / Sub / Pow / Sqrt / Div) driven by a Gemm on the latent and a batch-1 Reshape
constant, bilinear Resize; SCRFD's BN / MaxPool / nearest-upsampling FPN and nine flattened heads;
ArcFace's BN / PRelu / Flatten / Gemm with input and Reshape constants pinned to batch 1; GFPGAN-like
shape arithmetic (Shape / Gather / Concat / ConstantOfShape / Expand / Where), Split, Softmax, Erf,
Clip, ConvTranspose, DepthToSpace, InstanceNormalization.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT


class Graph:
    """A tiny graph builder: ``op`` appends a node and returns its output name."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def _name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def const(self, array: np.ndarray | float | list) -> str:
        name = self._name("k")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, *shape: int, scale: float | None = None) -> str:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
        w = self.rng.standard_normal(shape).astype(np.float32) * np.float32(scale or np.sqrt(1.0 / fan_in))
        return self.const(w)

    def op(self, kind: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        outs = [self._name(kind.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(kind, inputs, outs, **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int = 3, stride: int = 1, pad: int | None = None) -> str:
        p = k // 2 if pad is None else pad
        return self.op("Conv", [x, self.weight(cout, cin, k, k), self.weight(cout, scale=0.1)],
                       kernel_shape=[k, k], strides=[stride, stride], pads=[p] * 4)

    def bn(self, x: str, c: int) -> str:
        scale = self.const((1 + 0.1 * self.rng.standard_normal(c)).astype(np.float32))
        bias = self.const((0.1 * self.rng.standard_normal(c)).astype(np.float32))
        mean = self.const((0.1 * self.rng.standard_normal(c)).astype(np.float32))
        var = self.const((1 + 0.2 * self.rng.random(c)).astype(np.float32))
        return self.op("BatchNormalization", [x, scale, bias, mean, var], epsilon=1e-5)

    def model(self, inputs: list, outputs: list, name: str, opset: int = 17) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _adain(g: Graph, x: str, latent: str, c: int) -> str:
    """InstanceNorm written out as inswapper's export has it, styled by a Gemm on the latent
    reshaped through a batch-1 constant [1, 2, C, 1, 1]."""
    axes = dict(axes=[2, 3], keepdims=1)
    mean = g.op("ReduceMean", [x], **axes)
    centred = g.op("Sub", [x, mean])
    var = g.op("ReduceMean", [g.op("Pow", [centred, g.const(np.float32(2.0))])], **axes)
    normed = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, g.const(np.float32(1e-5))])])])
    style = g.op("Gemm", [latent, g.weight(2 * c, 512), g.weight(2 * c, scale=0.1)], transB=1)
    style = g.op("Reshape", [style, g.const(np.array([1, 2, c, 1, 1], np.int64))])
    gamma = g.op("Slice", [style, g.const(np.array([0], np.int64)), g.const(np.array([1], np.int64)),
                           g.const(np.array([1], np.int64))])
    beta = g.op("Slice", [style, g.const(np.array([1], np.int64)), g.const(np.array([2], np.int64)),
                          g.const(np.array([1], np.int64))])
    gamma = g.op("Squeeze", [gamma, g.const(np.array([1], np.int64))])
    beta = g.op("Squeeze", [beta, g.const(np.array([1], np.int64))])
    return g.op("Add", [g.op("Mul", [normed, g.op("Add", [gamma, g.const(np.float32(1.0))])]), beta])


def inswapper(size: int = 128, hyperswap: bool = False, seed: int = 0) -> onnx.ModelProto:
    """inswapper_128 contract: target [1,3,128,128], source [1,512] -> output [0,1]; 512x512 emap last.

    ``hyperswap=True``: inputs (source, target) at 256, outputs output [-1,1] and mask.
    """
    g = Graph(seed)
    reflect = g.const(np.array([0, 0, 3, 3, 0, 0, 3, 3], np.int64))
    x = g.op("Pad", ["target", reflect], mode="reflect")
    x = g.op("LeakyRelu", [g.conv(x, 3, 8, k=7, pad=0)], alpha=0.2)
    x = g.op("LeakyRelu", [g.conv(x, 8, 16, stride=2)], alpha=0.2)
    for _ in range(2):
        y = g.op("Pad", [x, g.const(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))], mode="reflect")
        y = _adain(g, g.conv(y, 16, 16, pad=0), "source", 16)
        x = g.op("Add", [x, g.op("Relu", [y])])
    x = g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32))], mode="linear")
    x = g.op("Tanh", [g.conv(x, 16, 3)])
    t = TensorProto.FLOAT
    if hyperswap:
        g.nodes.append(helper.make_node("Identity", [x], ["output"]))
        m = g.op("Sigmoid", [g.op("ReduceMean", [x], axes=[1], keepdims=1)])
        g.nodes.append(helper.make_node("Identity", [m], ["mask"]))
        ins = [helper.make_tensor_value_info("source", t, [1, 512]),
               helper.make_tensor_value_info("target", t, [1, 3, size, size])]
        outs = [helper.make_tensor_value_info("output", t, [1, 3, size, size]),
                helper.make_tensor_value_info("mask", t, [1, 1, size, size])]
        return g.model(ins, outs, "hyperswap_mini")
    half = g.const(np.float32(0.5))
    g.nodes.append(helper.make_node("Add", [g.op("Mul", [x, half]), half], ["output"]))
    g.inits.append(numpy_helper.from_array(
        (g.rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32), "emap"))
    ins = [helper.make_tensor_value_info("target", t, [1, 3, size, size]),
           helper.make_tensor_value_info("source", t, [1, 512])]
    return g.model(ins, [helper.make_tensor_value_info("output", t, [1, 3, size, size])], "inswapper_mini")


def scrfd(seed: int = 0) -> onnx.ModelProto:
    """det_10g contract: ``input.1`` [1,3,?,?] -> 9 outputs (scores, boxes, kps at strides 8/16/32)."""
    g = Graph(seed)
    x = g.op("Relu", [g.bn(g.conv("input.1", 3, 8, stride=2), 8)])
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])  # stride 4
    c8 = g.op("Relu", [g.bn(g.conv(x, 8, 16, stride=2), 16)])
    c16 = g.op("Relu", [g.conv(c8, 16, 16, stride=2)])
    c32 = g.op("Relu", [g.conv(c16, 16, 16, stride=2)])
    up = g.const(np.array([1, 1, 2, 2], np.float32))
    p32 = c32
    nearest = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    p16 = g.op("Add", [c16, g.op("Resize", [p32, "", up], **nearest)])
    p8 = g.op("Add", [c8, g.op("Resize", [p16, "", up], mode="nearest")])
    outs: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for level in (p8, p16, p32):
        for kind, ch in (("score", 2), ("bbox", 8), ("kps", 20)):
            y = g.conv(level, 16, ch)
            if kind == "score":
                y = g.op("Sigmoid", [y])
            y = g.op("Transpose", [y], perm=[0, 2, 3, 1])
            outs[kind].append(g.op("Reshape", [y, g.const(np.array([-1, ch // 2], np.int64))]))
    names = outs["score"] + outs["bbox"] + outs["kps"]
    outs_c = [1] * 3 + [4] * 3 + [10] * 3
    values = []
    for i, name in enumerate(names):
        g.nodes.append(helper.make_node("Identity", [name], [str(448 + i)]))
        values.append(helper.make_tensor_value_info(str(448 + i), FLOAT, ["rows", outs_c[i]]))
    ins = [helper.make_tensor_value_info("input.1", FLOAT, [1, 3, "H", "W"])]
    return g.model(ins, values, "scrfd_mini")


def arcface(seed: int = 0) -> onnx.ModelProto:
    """w600k_r50 contract with the batch pinned to 1 (input and a Reshape constant): [1,3,112,112] -> 512."""
    g = Graph(seed)
    x = g.bn(g.conv("input.1", 3, 16, stride=2), 16)
    x = g.op("PRelu", [x, g.const(np.full((16, 1, 1), 0.25, np.float32))])
    for _ in range(2):
        y = g.op("PRelu", [g.bn(g.conv(x, 16, 16), 16), g.const(np.full((16, 1, 1), 0.1, np.float32))])
        x = g.op("Add", [x, g.bn(g.conv(y, 16, 16), 16)])
    x = g.op("AveragePool", [g.conv(x, 16, 16, stride=2)], kernel_shape=[2, 2], strides=[2, 2])
    x = g.op("Flatten", [g.bn(x, 16)], axis=1)  # 16 x 14 x 14
    x = g.op("Gemm", [x, g.weight(512, 16 * 14 * 14), g.weight(512, scale=0.1)], transB=1)
    x = g.op("Reshape", [x, g.const(np.array([1, 512, 1, 1], np.int64))])
    x = g.bn(x, 512)
    g.nodes.append(helper.make_node("Reshape", [x, g.const(np.array([1, 512], np.int64))], ["683"]))
    ins = [helper.make_tensor_value_info("input.1", FLOAT, [1, 3, 112, 112])]
    return g.model(ins, [helper.make_tensor_value_info("683", FLOAT, [1, 512])], "arcface_mini")


def gfpgan(size: int = 512, seed: int = 0) -> onnx.ModelProto:
    """GFPGAN contract ``input`` [1,3,512,512] -> ``output`` [-1,1], through the operators of its export."""
    g = Graph(seed)
    x = g.op("LeakyRelu", [g.conv("input", 3, 8, stride=2)], alpha=0.2)
    x = g.op("InstanceNormalization", [x, g.const(np.ones(8, np.float32)), g.const(np.zeros(8, np.float32))])
    x = g.op("SpaceToDepth", [x], blocksize=2)  # 32 channels at 1/4
    a, b = g.op("Split", [x, g.const(np.array([16, 16], np.int64))], n_out=2, axis=1)
    attn = g.op("Softmax", [g.op("ReduceSum", [a, g.const(np.array([1], np.int64))], keepdims=1)], axis=-1)
    b = g.op("Mul", [b, attn])
    gelu = g.op("Mul", [b, g.op("Add", [g.op("Erf", [g.op("Div", [b, g.const(np.float32(1.4142135))])]),
                                        g.const(np.float32(1.0))])])
    x = g.op("Concat", [a, g.op("Mul", [gelu, g.const(np.float32(0.5))])], axis=1)
    # Shape arithmetic of a StyleGAN export: zeros shaped like x via Shape -> ConstantOfShape, masked.
    shape = g.op("Shape", [x])
    batch = g.op("Gather", [shape, g.const(np.array(0, np.int64))], axis=0)
    bias_shape = g.op("Concat", [g.op("Unsqueeze", [batch, g.const(np.array([0], np.int64))]),
                                 g.const(np.array([32, 1, 1], np.int64))], axis=0)
    zeros = g.op("ConstantOfShape", [bias_shape], value=numpy_helper.from_array(np.array([0.0], np.float32)))
    noise = g.op("Expand", [g.op("Add", [zeros, g.weight(1, 32, 1, 1, scale=0.1)]), shape])
    clipped = g.op("Clip", [x, g.const(np.float32(-1.0)), g.const(np.float32(1.0))])
    is_zero = g.op("Equal", [g.op("Cast", [clipped], to=TensorProto.INT64), g.const(np.array(0, np.int64))])
    x = g.op("Where", [is_zero, x, g.op("Add", [x, noise])])
    x = g.op("ConvTranspose", [x, g.weight(32, 16, 4, 4), g.weight(16, scale=0.1)],
             kernel_shape=[4, 4], strides=[2, 2], pads=[1, 1, 1, 1])  # back to 1/2
    x = g.op("DepthToSpace", [g.conv(x, 16, 12)], blocksize=2, mode="DCR")  # full size, 3 channels
    x = g.op("Resize", [g.op("AveragePool", [x], kernel_shape=[2, 2], strides=[2, 2]), "",
                        g.const(np.array([1, 1, 2, 2], np.float32))], mode="linear",
             coordinate_transformation_mode="align_corners")
    g.nodes.append(helper.make_node("Tanh", [x], ["output"]))
    ins = [helper.make_tensor_value_info("input", FLOAT, [1, 3, size, size])]
    return g.model(ins, [helper.make_tensor_value_info("output", FLOAT, [1, 3, size, size])], "gfpgan_mini")


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """The same graph with fp16 weights and compute, float32 I/O through Casts (as inswapper_128_fp16)."""
    from onnx import numpy_helper as nh

    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    scales = {node.input[2] for node in g.node if node.op_type == "Resize" and len(node.input) > 2}
    for init in g.initializer:
        if init.data_type == FLOAT and init.name not in scales:
            init.CopyFrom(nh.from_array(nh.to_array(init).astype(np.float16), init.name))
    for node in g.node:
        for attr in node.attribute:
            if attr.name == "value" and attr.t.data_type == FLOAT:
                attr.t.CopyFrom(nh.from_array(nh.to_array(attr.t).astype(np.float16)))
    casts = []
    for inp in g.input:
        if inp.type.tensor_type.elem_type == FLOAT:
            casts.append(helper.make_node("Cast", [inp.name], [inp.name + "_h"], to=TensorProto.FLOAT16))
            for node in g.node:
                node.input[:] = [inp.name + "_h" if n == inp.name else n for n in node.input]
    for out in g.output:
        for node in g.node:
            node.output[:] = [out.name + "_h" if n == out.name else n for n in node.output]
        casts.append(helper.make_node("Cast", [out.name + "_h"], [out.name], to=FLOAT))
    nodes = casts[: len(g.input)] + list(g.node) + casts[len(g.input):]
    del g.node[:]
    g.node.extend(nodes)
    return m


def inswapper_mixing_batches(seed: int = 0) -> onnx.ModelProto:
    """inswapper's contract, with the source centred by a ``ReduceMean(keepdims=1)`` over all its axes:
    valid at batch 1 (the file's), but at batch N the mean is taken over every item's source, a batch-1
    tensor broadcast to all, so items mix."""
    model = inswapper(seed=seed)
    mean = helper.make_node("ReduceMean", ["source"], ["source_mean"], keepdims=1)
    centred = helper.make_node("Sub", ["source", "source_mean"], ["source_centred"])
    for node in model.graph.node:
        node.input[:] = ["source_centred" if name == "source" else name for name in node.input]
    model.graph.node.insert(0, centred)
    model.graph.node.insert(0, mean)
    onnx.checker.check_model(model)
    return model
