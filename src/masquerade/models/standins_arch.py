"""An architecture-faithful, random-weight stand-in of inswapper_128, for timing only.

Public re-implementations describe inswapper as: a reflect-padded convolutional encoder down to
1024 x 32 x 32, six residual style blocks with AdaIN driven by the 512-d source latent, and a
bilinear-upsampling convolutional decoder back to 3 x 128 x 128 (about 138.3 M parameters and
174.6 GMAC per face). This graph follows that layout with the same I/O contract (``target``
[1,3,128,128], ``source`` [1,512] -> ``output`` [1,3,128,128] in [0, 1], 512x512 ``emap`` as the last
initializer), so ONNX Runtime does the same amount of work as on the real file. Its output means
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from masquerade.models.standins import OPSET


@dataclass(frozen=True)
class ArchStats:
    parameters: int
    macs: int
    """Multiply-accumulates of one forward pass (convolutions and the style projections)."""


class _Builder:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.params = 0
        self.macs = 0
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def weight(self, shape: tuple[int, ...], fan_in: int) -> str:
        name = self.name("w")
        w = (self.rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(1.0 / fan_in))).astype(
            np.float32
        )
        self.inits.append(numpy_helper.from_array(w, name))
        self.params += w.size
        return name

    def const(self, array: np.ndarray) -> str:
        name = self.name("c")
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, kind: str, inputs: list[str], **attrs) -> str:
        out = self.name(kind.lower())
        self.nodes.append(helper.make_node(kind, inputs, [out], **attrs))
        return out

    def conv(
        self, x: str, cin: int, cout: int, k: int, out_hw: int, stride: int = 1, reflect: int = 0
    ) -> str:
        if reflect:
            pads = self.const(np.array([0, 0, reflect, reflect, 0, 0, reflect, reflect], np.int64))
            x = self.op("Pad", [x, pads], mode="reflect")
            pad = [0, 0, 0, 0]
        else:
            pad = [k // 2] * 4
        w = self.weight((cout, cin, k, k), cin * k * k)
        b = self.weight((cout,), cin * k * k)
        self.macs += cin * cout * k * k * out_hw * out_hw
        return self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[stride, stride], pads=pad)

    def linear(self, x: str, fin: int, fout: int) -> str:
        w = self.weight((fin, fout), fin)
        b = self.weight((fout,), fin)
        self.macs += fin * fout
        return self.op("Add", [self.op("MatMul", [x, w]), b])

    def adain(self, x: str, latent: str, channels: int) -> str:
        ones, zeros = self.const(np.ones(channels, np.float32)), self.const(np.zeros(channels, np.float32))
        normed = self.op("InstanceNormalization", [x, ones, zeros], epsilon=1e-5)
        style = self.linear(latent, 512, 2 * channels)  # [1, 2C]: scale and shift
        shape = self.const(np.array([1, 2, channels, 1, 1], np.int64))
        style = self.op("Reshape", [style, shape])
        split = self.const(np.array([1, 1], np.int64))
        gamma, beta = self.name("gamma"), self.name("beta")
        self.nodes.append(helper.make_node("Split", [style, split], [gamma, beta], axis=1))
        axis = self.const(np.array([1], np.int64))
        gamma, beta = self.op("Squeeze", [gamma, axis]), self.op("Squeeze", [beta, axis])
        return self.op(
            "Add", [self.op("Mul", [normed, self.op("Add", [gamma, self.const(np.float32(1.0))])]), beta]
        )

    def up(self, x: str) -> str:
        scales = self.const(np.array([1, 1, 2, 2], np.float32))
        return self.op("Resize", [x, "", scales], mode="linear")


def inswapper_arch(seed: int = 0) -> tuple[onnx.ModelProto, ArchStats]:
    """The random-weight inswapper-shaped graph and its parameter / MAC counts."""
    b = _Builder(seed)
    lrelu = {"alpha": 0.2}
    x = b.op("LeakyRelu", [b.conv("target", 3, 128, 7, 128, reflect=3)], **lrelu)
    x = b.op("LeakyRelu", [b.conv(x, 128, 256, 3, 64, stride=2)], **lrelu)
    x = b.op("LeakyRelu", [b.conv(x, 256, 512, 3, 32, stride=2)], **lrelu)
    x = b.op("LeakyRelu", [b.conv(x, 512, 1024, 3, 32)], **lrelu)
    for _ in range(6):
        y = b.adain(b.conv(x, 1024, 1024, 3, 32, reflect=1), "source", 1024)
        y = b.adain(b.conv(b.op("Relu", [y]), 1024, 1024, 3, 32, reflect=1), "source", 1024)
        x = b.op("Add", [x, y])
    x = b.op("LeakyRelu", [b.conv(b.up(x), 1024, 512, 3, 64)], **lrelu)
    x = b.op("LeakyRelu", [b.conv(b.up(x), 512, 256, 3, 128)], **lrelu)
    x = b.op("LeakyRelu", [b.conv(x, 256, 128, 3, 128)], **lrelu)
    x = b.op("Tanh", [b.conv(x, 128, 3, 7, 128, reflect=3)])
    half = b.const(np.float32(0.5))
    b.nodes.append(helper.make_node("Add", [b.op("Mul", [x, half]), half], ["output"]))
    emap = (b.rng.standard_normal((512, 512)) / np.sqrt(512)).astype(np.float32)
    b.inits.append(numpy_helper.from_array(emap, "emap"))  # last initializer, as in the real file
    graph = helper.make_graph(
        b.nodes,
        "inswapper_arch_standin",
        [
            helper.make_tensor_value_info("target", TensorProto.FLOAT, [1, 3, 128, 128]),
            helper.make_tensor_value_info("source", TensorProto.FLOAT, [1, 512]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 128, 128])],
        initializer=b.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model, ArchStats(parameters=b.params, macs=b.macs)
