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


# -- further architecture-faithful stand-ins (benchmarks: `masquerade bench`) -----------------------


def _finish(b: _Builder, name: str, inputs: list, outputs: list) -> onnx.ModelProto:
    graph = helper.make_graph(b.nodes, name, inputs, outputs, initializer=b.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _prelu(b: _Builder, x: str, channels: int) -> str:
    return b.op("PRelu", [x, b.const(np.full((channels, 1, 1), 0.25, np.float32))])


def iresnet50_arch(seed: int = 0) -> tuple[onnx.ModelProto, ArchStats]:
    """Random-weight ArcFace IResNet50 (w600k_r50's layout): ``input.1`` [N,3,112,112] -> ``683`` [N,512].

    A 3x3 stem, then IResNet blocks (conv3x3, PReLU, conv3x3 with the stride on the second) in
    stages of 3, 4, 14 and 3 blocks at 64, 128, 256 and 512 channels (each stage halves the side,
    112 -> 7), a 25088 -> 512 fully connected layer. About 43.6 M parameters, 6.3 GMAC per face.
    Batch normalisations are left out: ONNX Runtime folds them into the convolutions anyway.
    """
    b = _Builder(seed)
    x = _prelu(b, b.conv("input.1", 3, 64, 3, 112), 64)
    hw, cin = 112, 64
    for cout, blocks in ((64, 3), (128, 4), (256, 14), (512, 3)):
        for i in range(blocks):
            stride = 2 if i == 0 else 1
            out_hw = hw // stride
            y = _prelu(b, b.conv(x, cin, cout, 3, hw), cout)
            y = b.conv(y, cout, cout, 3, out_hw, stride=stride)
            shortcut = b.conv(x, cin, cout, 1, out_hw, stride=stride) if i == 0 else x
            x, cin, hw = b.op("Add", [y, shortcut]), cout, out_hw
    emb = b.linear(b.op("Flatten", [x], axis=1), 512 * 7 * 7, 512)
    b.nodes.append(helper.make_node("Identity", [emb], ["683"]))
    model = _finish(
        b, "iresnet50_arch_standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])],
    )
    return model, ArchStats(parameters=b.params, macs=b.macs)


def scrfd10g_arch(seed: int = 0, size: int = 640) -> tuple[onnx.ModelProto, ArchStats]:
    """Random-weight SCRFD-10G-sized detector with det_10g's contract (MACs counted at ``size`` x ``size``).

    ResNet-v1e-like stem (three 3x3 convs, max-pool), basic-block stages (3, 4, 2, 3 blocks; 56, 88,
    88, 224 channels; strides 4..32), a PAFPN neck (56 channels) over strides 8/16/32 and a head of
    three 3x3 convs (80 channels) shared by the strides, with 2 anchors per cell. Input ``input.1``
    [1,3,H,W]; nine outputs score_8/16/32 [(H/s)(W/s)2, 1], bbox [..., 4], kps [..., 10], in that order.
    The score head carries a -20 bias so random weights yield no detections (decoding stays as
    cheap as on a real frame with a few faces); use it for timing, not for finding faces.
    """
    b = _Builder(seed)
    relu = "Relu"

    def block(x: str, cin: int, cout: int, hw: int, stride: int) -> str:
        out_hw = hw // stride
        y = b.op(relu, [b.conv(x, cin, cout, 3, out_hw, stride=stride)])
        y = b.conv(y, cout, cout, 3, out_hw)
        short = b.conv(x, cin, cout, 1, out_hw, stride=stride) if (stride > 1 or cin != cout) else x
        return b.op(relu, [b.op("Add", [y, short])])

    half = size // 2
    x = b.op(relu, [b.conv("input.1", 3, 28, 3, half, stride=2)])
    x = b.op(relu, [b.conv(x, 28, 28, 3, half)])
    x = b.op(relu, [b.conv(x, 28, 56, 3, half)])
    x = b.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    hw, cin, feats = size // 4, 56, []
    for stage, (cout, blocks) in enumerate(((56, 3), (88, 4), (88, 2), (224, 3))):
        for i in range(blocks):
            stride = 2 if (i == 0 and stage > 0) else 1
            x, cin, hw = block(x, cin, cout, hw, stride), cout, hw // stride
        if stage > 0:
            feats.append((x, cout, hw))
    neck = 56
    lateral = [b.conv(f, c, neck, 1, h) for f, c, h in feats]
    for i in (1, 0):  # top-down: add the upsampled coarser level
        lateral[i] = b.op("Add", [lateral[i], b.up(lateral[i + 1])])
    sides = [h for _, _, h in feats]
    outs = [b.conv(x, neck, neck, 3, h) for x, h in zip(lateral, sides, strict=True)]
    for i in (1, 2):  # bottom-up path aggregation
        down = b.conv(outs[i - 1], neck, neck, 3, sides[i], stride=2)
        outs[i] = b.conv(b.op("Add", [outs[i], down]), neck, neck, 3, sides[i])
    # One head shared by the three strides: build its weights once, count its MACs per level.
    shared: dict[str, str] = {}
    heads: dict[str, list[str]] = {"score": [], "bbox": [], "kps": []}
    for x, h in zip(outs, sides, strict=True):
        y, c = x, neck
        for j in range(3):
            key = f"stack{j}"
            if key not in shared:
                shared[key] = b.conv("__in__", c, 80, 3, h)
                node = b.nodes.pop()
                shared[key + "_w"] = node.input[1]
                shared[key + "_b"] = node.input[2]
            else:
                b.macs += c * 80 * 9 * h * h
            y = b.op(relu, [b.op("Conv", [y, shared[key + "_w"], shared[key + "_b"]],
                                 kernel_shape=[3, 3], pads=[1, 1, 1, 1])])
            c = 80
        for kind, per_anchor in (("score", 1), ("bbox", 4), ("kps", 10)):
            if kind not in shared:
                b.conv("__in__", 80, 2 * per_anchor, 3, h)
                node = b.nodes.pop()
                shared[kind] = node.input[1]
                shared[kind + "_b"] = node.input[2]
            else:
                b.macs += 80 * 2 * per_anchor * 9 * h * h
            t = b.op("Conv", [y, shared[kind], shared[kind + "_b"]], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
            if kind == "score":
                t = b.op("Sigmoid", [b.op("Add", [t, b.const(np.float32(-20.0))])])
            t = b.op("Transpose", [t], perm=[0, 2, 3, 1])
            heads[kind].append(b.op("Reshape", [t, b.const(np.array([-1, per_anchor], np.int64))]))
    names, outputs = heads["score"] + heads["bbox"] + heads["kps"], []
    for i, (name, width) in enumerate(zip(names, [1] * 3 + [4] * 3 + [10] * 3, strict=True)):
        b.nodes.append(helper.make_node("Identity", [name], [str(448 + i)]))
        outputs.append(helper.make_tensor_value_info(str(448 + i), TensorProto.FLOAT, [None, width]))
    model = _finish(
        b, "scrfd10g_arch_standin",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, "H", "W"])], outputs,
    )
    return model, ArchStats(parameters=b.params, macs=b.macs)


def _resample(b: _Builder, x: str, factor: float) -> str:
    scales = b.const(np.array([1, 1, factor, factor], np.float32))
    return b.op("Resize", [x, "", scales], mode="linear")


def gfpgan_arch(seed: int = 0) -> tuple[onnx.ModelProto, ArchStats]:
    """Random-weight GFPGAN-v1-clean-shaped enhancer: ``input`` [1,3,512,512] -> ``output`` same, [-1, 1].

    U-Net encoder of residual down blocks (64 channels at 512 px up to 512 at 4 px), a 8192 -> 8192
    linear layer giving 16 style codes, a U-Net decoder of residual up blocks whose features drive
    spatial feature transforms (scale and shift convs) inside a StyleGAN2-like synthesis path with
    style-modulated convolutions (modelled as AdaIN) from 4 to 512 px, channel multiplier 2.
    """
    b = _Builder(seed)
    lrelu = {"alpha": 0.2}
    ch = {4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64}
    x = b.op("LeakyRelu", [b.conv("input", 3, 64, 1, 512)], **lrelu)
    skips, hw = {512: x}, 512
    while hw > 4:
        cin, cout, out_hw = ch[hw], ch[hw // 2], hw // 2
        y = b.op("LeakyRelu", [b.conv(x, cin, cin, 3, hw)], **lrelu)
        y = b.op("LeakyRelu", [b.conv(_resample(b, y, 0.5), cin, cout, 3, out_hw)], **lrelu)
        x, hw = b.op("Add", [y, b.conv(_resample(b, x, 0.5), cin, cout, 1, out_hw)]), out_hw
        skips[hw] = x
    x = b.op("LeakyRelu", [b.conv(x, 512, 512, 3, 4)], **lrelu)
    styles = b.linear(b.op("Flatten", [x], axis=1), 512 * 16, 512 * 16)
    latent = b.op("Slice", [styles, b.const(np.array([0], np.int64)), b.const(np.array([512], np.int64)),
                            b.const(np.array([1], np.int64))])
    unet, image = x, b.adain(b.conv(x, 512, 512, 3, 4), latent, 512)
    hw = 4
    while hw < 512:
        cin, cout, hw = ch[hw], ch[hw * 2], hw * 2
        # U-Net decoder step: residual up block plus the encoder's skip at this size.
        y = b.op("LeakyRelu", [b.conv(unet, cin, cin, 3, hw // 2)], **lrelu)
        y = b.op("LeakyRelu", [b.conv(b.up(y), cin, cout, 3, hw)], **lrelu)
        unet = b.op("Add", [b.op("Add", [y, b.conv(b.up(unet), cin, cout, 1, hw)]), skips[hw]])
        # StyleGAN2 step: up-conv and conv, both modulated, with the SFT in between.
        image = b.op("LeakyRelu", [b.adain(b.conv(b.up(image), cin, cout, 3, hw), latent, cout)], **lrelu)
        # SFT on half the channels (GFPGAN's sft_half): scale and shift come from the U-Net features.
        half = cout // 2
        scale = b.conv(b.op("LeakyRelu", [b.conv(unet, cout, cout, 3, hw)], **lrelu), cout, half, 3, hw)
        shift = b.conv(b.op("LeakyRelu", [b.conv(unet, cout, cout, 3, hw)], **lrelu), cout, half, 3, hw)
        same, changed = b.name("same"), b.name("sft")
        b.nodes.append(helper.make_node("Split", [image, b.const(np.array([half, half], np.int64))],
                                        [same, changed], axis=1))
        changed = b.op("Add", [b.op("Mul", [changed, b.op("Add", [scale, b.const(np.float32(1.0))])]), shift])
        image = b.op("Concat", [same, changed], axis=1)
        image = b.op("LeakyRelu", [b.adain(b.conv(image, cout, cout, 3, hw), latent, cout)], **lrelu)
    rgb = b.conv(image, 64, 3, 1, 512)
    b.nodes.append(helper.make_node("Tanh", [rgb], ["output"]))
    model = _finish(
        b, "gfpgan_arch_standin",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 512, 512])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 512, 512])],
    )
    return model, ArchStats(parameters=b.params, macs=b.macs)
