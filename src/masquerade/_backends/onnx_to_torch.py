"""A generic ONNX -> PyTorch converter: the graph becomes an ``nn.Module`` that runs its nodes in order.

The module keeps ONNX semantics node for node (operators in :mod:`torch_ops` and :mod:`torch_nn_ops`),
so one converter serves every model the ONNX Runtime backend runs. At conversion:

- every node whose inputs are all constants is evaluated once (constant folding), so weight
  arithmetic and shape constants cost nothing per call;
- float constants become buffers (they follow ``.to(device)`` and are cast to the compute dtype);
  integer constants stay small CPU tensors for shape arithmetic;
- the batch becomes dynamic: input shapes are never checked, and a Reshape whose constant shape
  starts with 1 (the exporter's baked-in batch) keeps the live batch instead, when its data carries
  the batch (ONNX shape inference says the leading dimension was 1 and, at run time, it equals the
  batch of the first input);
- an operator outside the supported set raises :class:`UnsupportedOperator` naming every such op.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import shape_inference

from masquerade._backends.torch_nn_ops import NN_OPS
from masquerade._backends.torch_ops import TENSOR_OPS, OpFn, Tensor, attribute_value, ints, tensor_from_proto
from masquerade._backends.torch_select_ops import RANDOM_OPS, SELECT_OPS
from masquerade.errors import ModelError, UnsupportedOperator

OPS: dict[str, OpFn] = {**TENSOR_OPS, **NN_OPS, **SELECT_OPS}
"""Every supported ONNX operator (default domain) -> its PyTorch implementation."""

_REDUCE = {1}
STATIC_SLOTS: dict[str, set[int]] = {
    "Reshape": {1}, "Expand": {1}, "Tile": {1}, "Slice": {1, 2, 3, 4}, "Squeeze": {1}, "Unsqueeze": {1},
    "Split": {1}, "Pad": {1, 2, 3}, "Clip": {1, 2}, "Resize": {1, 2, 3}, "Upsample": {1}, "TopK": {1},
    "OneHot": {1}, "ReduceMean": _REDUCE, "ReduceSum": _REDUCE, "ReduceMax": _REDUCE, "ReduceMin": _REDUCE,
    "ReduceL2": _REDUCE, "ReduceSumSquare": _REDUCE,
}
"""Input slots an operator reads only as Python numbers (shapes, axes, pads, scales, bounds)."""


@dataclass
class Node:
    """One ONNX node, ready to run: parsed attributes plus what the converter decided about it."""

    op_type: str
    name: str
    inputs: list[str]
    """Input value names; "" for an omitted optional input."""
    outputs: list[str]
    attrs: dict[str, Any]
    opset: int
    fn: OpFn
    float_dtype: torch.dtype | None = None
    """Compute dtype of a reduced-precision module: float Casts go to it instead."""
    batch_leading: bool = False
    """A Reshape whose constant shape starts with the exporter's batch 1."""
    release: list[str] = field(default_factory=list)
    """Values last used by this node, dropped after it runs (keeps peak memory down)."""
    static: dict[int, list] = field(default_factory=dict)
    """Constant shape-like inputs (by slot) as Python lists: no tensor reads per call, which also
    spares torch.compile a graph break for each."""

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)


def load_model(model: onnx.ModelProto | str | Path | bytes) -> onnx.ModelProto:
    """An ONNX ModelProto from a proto, a path or serialised bytes."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, bytes):
            return onnx.load_from_string(model)
        return onnx.load(str(model))
    except Exception as error:  # onnx raises DecodeError, OSError... for bad files
        raise ModelError(f"{model if not isinstance(model, bytes) else 'model'} is not a readable ONNX "
                         f"model ({type(error).__name__})") from None


def _leading_dims(model: onnx.ModelProto) -> dict[str, int | None]:
    """Leading dimension of every value ONNX shape inference can type (None: symbolic / unknown)."""
    try:
        inferred = shape_inference.infer_shapes(model)
    except Exception:  # inference is a help, not a requirement: unknown shapes just stay unknown
        return {}
    dims: dict[str, int | None] = {}
    graph = inferred.graph
    for info in list(graph.value_info) + list(graph.input) + list(graph.output):
        shape = info.type.tensor_type.shape
        if shape.dim:
            first = shape.dim[0]
            dims[info.name] = first.dim_value if first.HasField("dim_value") else None
    return dims


class OnnxModule(torch.nn.Module):
    """An ONNX graph as a module: ``forward(*inputs)`` in ``input_names`` order -> tuple of outputs."""

    def __init__(self, nodes: list[Node], constants: dict[str, Tensor], input_names: list[str],
                 output_names: list[str], float_dtype: torch.dtype | None) -> None:
        super().__init__()
        self.nodes = nodes
        self.input_names = input_names
        self.output_names = output_names
        self.float_dtype = float_dtype
        self._buffer_of: dict[str, str] = {}
        self._static: dict[str, Tensor] = {}  # integer / bool constants: shape arithmetic stays on CPU
        for i, (name, value) in enumerate(constants.items()):
            if value.is_floating_point():
                value = value.to(float_dtype) if float_dtype else value
                self.register_buffer(f"c{i}", value, persistent=False)
                self._buffer_of[name] = f"c{i}"
            else:
                self._static[name] = value

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if len(inputs) != len(self.input_names):
            raise ValueError(f"expected {len(self.input_names)} inputs ({', '.join(self.input_names)}), "
                             f"got {len(inputs)}")
        values: dict[str, Tensor | None] = {"": None}
        values.update(self._static)
        values.update({name: getattr(self, buf) for name, buf in self._buffer_of.items()})
        values.update(zip(self.input_names, inputs, strict=True))
        batch = inputs[0].shape[0] if inputs and inputs[0].dim() else 1
        for node in self.nodes:
            static = node.static
            args = [static[i] if i in static else values[name] for i, name in enumerate(node.inputs)]
            while args and args[-1] is None:
                args.pop()
            if node.batch_leading:
                out: Any = _reshape_batched(node, args[0], args[1], batch)  # type: ignore[arg-type]
            else:
                out = node.fn(node, *args)
            if isinstance(out, torch.Tensor):
                values[node.outputs[0]] = out
            else:
                values.update(zip(node.outputs, out, strict=False))
            for name in node.release:
                values.pop(name, None)
        return tuple(values[name] for name in self.output_names)  # type: ignore[misc]


def _reshape_batched(node: Node, x: Tensor, shape: Tensor, batch: int) -> Tensor:
    dims = ints(shape)
    if x.dim() and x.shape[0] == batch:
        dims[0] = batch
    if not node.attrs.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def convert(
    model: onnx.ModelProto | str | Path | bytes,
    float_dtype: torch.dtype | None = None,
    dynamic_batch: bool = True,
) -> OnnxModule:
    """An :class:`OnnxModule` computing the ONNX ``model``.

    ``float_dtype`` (e.g. ``torch.float16``) makes every float constant and Cast use that dtype;
    None keeps the graph's own dtypes. ``dynamic_batch`` lets batch-1 Reshape constants follow the
    live batch. Raises :class:`UnsupportedOperator` listing the operators it cannot run.
    """
    proto = load_model(model)
    graph = proto.graph
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 13)
    unsupported = sorted({
        (n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}") for n in graph.node
        if n.domain not in ("", "ai.onnx") or n.op_type not in OPS
    })
    if unsupported:
        raise UnsupportedOperator(
            f"the PyTorch backend cannot run {graph.name or 'this model'}: unsupported ONNX operator(s) "
            f"{', '.join(unsupported)}; use an ONNX Runtime provider (cpu/cuda) for it"
        )
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        raise ModelError("models with external weight files are not supported by the PyTorch backend")
    constants: dict[str, Tensor] = {init.name: tensor_from_proto(init) for init in graph.initializer}
    input_names = [i.name for i in graph.input if i.name not in constants]
    output_names = [o.name for o in graph.output]
    leading = _leading_dims(proto) if dynamic_batch else {}
    nodes: list[Node] = []
    for index, proto_node in enumerate(graph.node):
        node = Node(
            op_type=proto_node.op_type, name=proto_node.name or f"{proto_node.op_type}_{index}",
            inputs=list(proto_node.input), outputs=list(proto_node.output),
            attrs={a.name: attribute_value(a) for a in proto_node.attribute}, opset=opset,
            fn=OPS[proto_node.op_type],
        )
        if node.op_type not in RANDOM_OPS and all(name == "" or name in constants for name in node.inputs):
            _fold(node, constants)
            continue
        if node.op_type == "Reshape" and dynamic_batch and node.inputs[1] in constants:
            shape = ints(constants[node.inputs[1]])
            data_lead = leading.get(node.inputs[0], None)
            node.batch_leading = bool(shape) and shape[0] == 1 and data_lead in (1, None)
        node.float_dtype = float_dtype
        for slot in STATIC_SLOTS.get(node.op_type, ()):
            if slot < len(node.inputs) and node.inputs[slot] in constants:
                node.static[slot] = constants[node.inputs[slot]].reshape(-1).tolist()
        if node.op_type == "Pow" and node.inputs[1] in constants and constants[node.inputs[1]].numel() == 1:
            node.static[1] = constants[node.inputs[1]].reshape(-1).tolist()
        nodes.append(node)
    nodes = _fold_batch_norms(nodes, constants, set(output_names))
    _mark_releases(nodes, set(output_names))
    used = {name for node in nodes for name in node.inputs} | set(output_names)
    kept = {name: value for name, value in constants.items() if name in used}
    return OnnxModule(nodes, kept, input_names, output_names, float_dtype)


def _fold(node: Node, constants: dict[str, Tensor]) -> None:
    """Evaluate a node of constants once, in the graph's own dtypes, and store its outputs."""
    args = [constants[name] if name else None for name in node.inputs]
    while args and args[-1] is None:
        args.pop()
    try:
        out = node.fn(node, *args)
    except NotImplementedError as error:
        raise UnsupportedOperator(f"{node.op_type} node {node.name!r}: {error}") from None
    outs: Sequence[Tensor] = [out] if isinstance(out, torch.Tensor) else out
    constants.update(zip(node.outputs, outs, strict=False))


def _fold_batch_norms(nodes: list[Node], constants: dict[str, Tensor], keep: set[str]) -> list[Node]:
    """Merge each inference BatchNormalization into the Conv that alone feeds it (one kernel, not two).

    The merged weights are computed in float64 from the file's values, so folding adds no rounding
    of its own beyond the final cast.
    """
    uses: dict[str, int] = {}
    for node in nodes:
        for name in node.inputs:
            uses[name] = uses.get(name, 0) + 1
    producer = {node.outputs[0]: node for node in nodes if node.op_type == "Conv"}
    dropped: set[int] = set()
    for node in nodes:
        conv = producer.get(node.inputs[0]) if node.op_type == "BatchNormalization" else None
        if conv is None or uses.get(conv.outputs[0]) != 1 or conv.outputs[0] in keep:
            continue
        params = [constants.get(name) for name in node.inputs[1:5]]
        weight = constants.get(conv.inputs[1])
        bias = constants.get(conv.inputs[2]) if len(conv.inputs) > 2 and conv.inputs[2] else None
        has_bias = len(conv.inputs) > 2 and bool(conv.inputs[2])
        if weight is None or any(p is None for p in params) or (has_bias and bias is None):
            continue
        scale, shift, mean, var = (p.double() for p in params)  # type: ignore[union-attr]
        factor = scale / torch.sqrt(var + node.attrs.get("epsilon", 1e-5))
        w = weight.double() * factor.reshape(-1, *([1] * (weight.dim() - 1)))
        b = ((bias.double() if bias is not None else torch.zeros_like(mean)) - mean) * factor + shift
        w_name, b_name = f"{conv.name}::bn_w", f"{conv.name}::bn_b"
        constants[w_name], constants[b_name] = w.to(weight.dtype), b.to(weight.dtype)
        conv.inputs = [conv.inputs[0], w_name, b_name]
        conv.outputs = list(node.outputs)
        dropped.add(id(node))
    return [node for node in nodes if id(node) not in dropped]


def _mark_releases(nodes: list[Node], keep: set[str]) -> None:
    last: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for name in node.inputs:
            if name:
                last[name] = i
    for name, i in last.items():
        if name not in keep:
            nodes[i].release.append(name)
