"""ONNX operators as PyTorch functions: tensor algebra, shapes and indexing.

Every operator has the signature ``op(node, *inputs) -> Tensor | tuple[Tensor, ...]`` where ``node``
is an :class:`~masquerade._backends.onnx_to_torch.Node` (attributes, opset, compute dtype, flags) and
missing optional inputs are ``None``. The network operators (convolutions, pools, norms, resizes)
live in :mod:`masquerade._backends.torch_nn_ops`, gather / scatter / random ones in
:mod:`masquerade._backends.torch_select_ops`.

Shape arithmetic (Shape -> Gather -> Concat -> Reshape) runs on small int64 CPU tensors; binary
operators move such a tensor onto the other operand's device when the two meet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    from masquerade._backends.onnx_to_torch import Node

Tensor = torch.Tensor
OpFn = Callable[..., Any]

ONNX_TO_TORCH_DTYPE: dict[int, torch.dtype] = {
    TensorProto.FLOAT: torch.float32, TensorProto.FLOAT16: torch.float16,
    TensorProto.BFLOAT16: torch.bfloat16, TensorProto.DOUBLE: torch.float64,
    TensorProto.INT64: torch.int64, TensorProto.INT32: torch.int32, TensorProto.INT16: torch.int16,
    TensorProto.INT8: torch.int8, TensorProto.UINT8: torch.uint8, TensorProto.BOOL: torch.bool,
}


def tensor_from_proto(proto: TensorProto) -> Tensor:
    """A CPU tensor holding an ONNX TensorProto (initializers, Constant values)."""
    array = numpy_helper.to_array(proto)
    if proto.data_type == TensorProto.BFLOAT16:  # numpy has no bfloat16: onnx hands back raw bits
        return torch.from_numpy(np.ascontiguousarray(array).astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(np.array(array, copy=True))


def ints(x: Tensor | list | None) -> list[int]:
    """An int64 tensor (shape, axes, pads...) as a Python list; constants arrive as lists already."""
    if x is None:
        return []
    return [int(v) for v in (x if isinstance(x, list) else x.reshape(-1).tolist())]


def floats(x: Tensor | list | None) -> list[float]:
    """A float tensor (scales, clip bounds...) as a Python list; constants arrive as lists already."""
    if x is None:
        return []
    return [float(v) for v in (x if isinstance(x, list) else x.reshape(-1).tolist())]


def aligned(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Put a CPU shape tensor on the other operand's device (CUDA math cannot take CPU non-scalars)."""
    if a.device != b.device:
        if a.device.type == "cpu":
            a = a.to(b.device)
        else:
            b = b.to(a.device)
    return a, b


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> OpFn:
    def op(node: Node, a: Tensor, b: Tensor) -> Tensor:
        return fn(*aligned(a, b))
    return op


def _div(a: Tensor, b: Tensor) -> Tensor:
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")  # ONNX integer Div truncates
    return a / b


def op_pow(node: Node, a: Tensor, b: Tensor | list) -> Tensor:
    if isinstance(b, list):  # a constant scalar exponent, resolved at conversion
        return a * a if b == [2.0] else torch.pow(a, b[0])  # x*x: exact and cheaper (hand-written norms)
    a, b = aligned(a, b)
    return torch.pow(a, b.to(a.dtype) if a.is_floating_point() else b)


def _unary(fn: Callable[[Tensor], Tensor]) -> OpFn:
    def op(node: Node, x: Tensor) -> Tensor:
        return fn(x)
    return op


def _variadic(fn: Callable[[Tensor, Tensor], Tensor]) -> OpFn:
    def op(node: Node, *xs: Tensor) -> Tensor:
        out = xs[0]
        for x in xs[1:]:
            out = fn(*aligned(out, x))
        return out
    return op


def _axes(node: Node, axes_input: Tensor | None) -> list[int] | None:
    """Axes from the input (newer opsets) or the attribute (older ones)."""
    if axes_input is not None:
        return ints(axes_input)
    attr = node.attrs.get("axes")
    return None if attr is None else [int(a) for a in attr]


def _reduce(fn: Callable[..., Tensor]) -> OpFn:
    def op(node: Node, x: Tensor, axes_input: Tensor | None = None) -> Tensor:
        axes = _axes(node, axes_input)
        keep = bool(node.attrs.get("keepdims", 1))
        if not axes:
            if node.attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.dim()))
        return fn(x, dim=axes, keepdim=keep)
    return op


def _reduce_max(x: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    return torch.amax(x, dim=dim, keepdim=keepdim)


def _reduce_min(x: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    return torch.amin(x, dim=dim, keepdim=keepdim)


def _reduce_l2(x: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    return torch.sqrt(torch.sum(x * x, dim=dim, keepdim=keepdim))


def _reduce_sumsq(x: Tensor, dim: list[int], keepdim: bool) -> Tensor:
    return torch.sum(x * x, dim=dim, keepdim=keepdim)


def op_constant(node: Node) -> Tensor:
    attrs = node.attrs
    if "value" in attrs:
        return attrs["value"]
    for key, dtype in (("value_float", torch.float32), ("value_floats", torch.float32),
                       ("value_int", torch.int64), ("value_ints", torch.int64)):
        if key in attrs:
            return torch.tensor(attrs[key], dtype=dtype)
    raise NotImplementedError(f"Constant node {node.name!r} has no supported value attribute")


def op_constant_of_shape(node: Node, shape: Tensor) -> Tensor:
    value = node.attrs.get("value")
    fill = value.reshape(-1)[0] if value is not None else torch.tensor(0.0)
    dtype = node.float_dtype if fill.is_floating_point() and node.float_dtype is not None else fill.dtype
    return torch.full(ints(shape), fill.item(), dtype=dtype)


def op_cast(node: Node, x: Tensor) -> Tensor:
    dtype = ONNX_TO_TORCH_DTYPE[int(node.attrs["to"])]
    if dtype.is_floating_point and node.float_dtype is not None:
        dtype = node.float_dtype  # a half/bf16 session computes every float in its own dtype
    return x.to(dtype)


def op_shape(node: Node, x: Tensor) -> Tensor:
    dims = list(x.shape)
    start, end = node.attrs.get("start", 0), node.attrs.get("end", len(dims))
    return torch.tensor(dims[start:end], dtype=torch.int64)


def op_reshape(node: Node, x: Tensor, shape: Tensor) -> Tensor:
    dims = ints(shape)
    if node.batch_leading and dims and dims[0] == 1:
        dims[0] = x.shape[0]  # the exporter baked batch 1 in: keep the live batch instead
    if not node.attrs.get("allowzero", 0):
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def op_flatten(node: Node, x: Tensor) -> Tensor:
    axis = node.attrs.get("axis", 1)
    axis = axis + x.dim() if axis < 0 else axis
    return x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)


def op_transpose(node: Node, x: Tensor) -> Tensor:
    perm = node.attrs.get("perm") or list(range(x.dim()))[::-1]
    return x.permute(*perm)


def op_concat(node: Node, *xs: Tensor) -> Tensor:
    device = next((x.device for x in xs if x.device.type != "cpu"), xs[0].device)
    parts = [x.to(device) for x in xs]
    axis = node.attrs["axis"]
    if axis % max(parts[0].dim(), 1) != 0 and len({p.shape[0] for p in parts if p.dim()}) > 1:
        # A batch-1 constant (learned token, positional map) joined to batched activations: follow the batch.
        batch = max(p.shape[0] for p in parts)
        parts = [p.expand(batch, *p.shape[1:]) if p.dim() and p.shape[0] == 1 else p for p in parts]
    return torch.cat(parts, dim=axis)


def op_split(node: Node, x: Tensor, split: Tensor | None = None) -> tuple[Tensor, ...]:
    axis = node.attrs.get("axis", 0)
    sizes = ints(split) if split is not None else list(node.attrs.get("split", []))
    if not sizes:
        parts = node.attrs.get("num_outputs", node.num_outputs)
        size = x.shape[axis]
        chunk = -(-size // parts)
        sizes = [min(chunk, size - i * chunk) for i in range(parts)]
    return tuple(torch.split(x, sizes, dim=axis))


def op_slice(node: Node, x: Tensor, starts: Tensor | None = None, ends: Tensor | None = None,
             axes: Tensor | None = None, steps: Tensor | None = None) -> Tensor:
    if starts is None:  # opset < 10: attributes
        s, e = list(node.attrs["starts"]), list(node.attrs["ends"])
        a = list(node.attrs.get("axes", range(len(s))))
        st = [1] * len(s)
    else:
        s, e = ints(starts), ints(ends)
        a = ints(axes) if axes is not None else list(range(len(s)))
        st = ints(steps) if steps is not None else [1] * len(s)
    index: list[Any] = [slice(None)] * x.dim()
    flips = []
    for start, end, axis, step in zip(s, e, a, st, strict=True):
        axis = axis + x.dim() if axis < 0 else axis
        n = x.shape[axis]
        if step > 0:
            start = max(0, min(n, start + n if start < 0 else start))
            end = max(0, min(n, end + n if end < 0 else end))
            index[axis] = slice(start, end, step)
        else:  # torch has no negative steps: slice the mirrored range, then flip
            start = max(-1, min(n - 1, start + n if start < 0 else start))
            end = max(-1, min(n - 1, end + n if end < 0 else end))
            index[axis] = slice(end + 1, start + 1)
            flips.append((axis, -step))
    out = x[tuple(index)]
    for axis, step in flips:
        out = out.flip(axis)
        if step != 1:
            out = out.narrow(axis, 0, out.shape[axis]).index_select(
                axis, torch.arange(0, out.shape[axis], step, device=out.device))
    return out


def op_squeeze(node: Node, x: Tensor, axes: Tensor | None = None) -> Tensor:
    dims = _axes(node, axes)
    if dims is None:
        return x.squeeze()
    return x.squeeze(tuple(d + x.dim() if d < 0 else d for d in dims))


def op_unsqueeze(node: Node, x: Tensor, axes: Tensor | None = None) -> Tensor:
    dims = _axes(node, axes) or []
    rank = x.dim() + len(dims)
    for d in sorted(d + rank if d < 0 else d for d in dims):
        x = x.unsqueeze(d)
    return x






def op_expand(node: Node, x: Tensor, shape: Tensor) -> Tensor:
    return x.expand(torch.broadcast_shapes(tuple(x.shape), tuple(ints(shape))))


def op_tile(node: Node, x: Tensor, repeats: Tensor) -> Tensor:
    return x.repeat(*ints(repeats))






def op_clip(
    node: Node, x: Tensor, lo: Tensor | list | None = None, hi: Tensor | list | None = None
) -> Tensor:
    lo_v = floats(lo)[0] if lo is not None else node.attrs.get("min")
    hi_v = floats(hi)[0] if hi is not None else node.attrs.get("max")
    return torch.clamp(x, lo_v, hi_v)


def op_softmax(node: Node, x: Tensor) -> Tensor:
    if node.opset >= 13:
        return torch.softmax(x, dim=node.attrs.get("axis", -1))
    axis = node.attrs.get("axis", 1)  # before opset 13: softmax over everything from ``axis`` on
    axis = axis + x.dim() if axis < 0 else axis
    flat = x.reshape(int(np.prod(x.shape[:axis], dtype=np.int64)), -1)
    return torch.softmax(flat, dim=1).reshape(x.shape)




def op_gemm(node: Node, a: Tensor, b: Tensor, c: Tensor | None = None) -> Tensor:
    a = a.transpose(-1, -2) if node.attrs.get("transA", 0) else a
    b = b.transpose(-1, -2) if node.attrs.get("transB", 0) else b
    alpha, beta = node.attrs.get("alpha", 1.0), node.attrs.get("beta", 1.0)
    out = a @ b
    if alpha != 1.0:
        out = out * alpha
    if c is not None:
        out = out + (c if beta == 1.0 else c * beta)
    return out


def op_prelu(node: Node, x: Tensor, slope: Tensor) -> Tensor:
    return torch.where(x >= 0, x, x * slope)


def op_leaky_relu(node: Node, x: Tensor) -> Tensor:
    return torch.nn.functional.leaky_relu(x, node.attrs.get("alpha", 0.01))


def op_elu(node: Node, x: Tensor) -> Tensor:
    return torch.nn.functional.elu(x, node.attrs.get("alpha", 1.0))


def op_hard_sigmoid(node: Node, x: Tensor) -> Tensor:
    return torch.clamp(x * node.attrs.get("alpha", 0.2) + node.attrs.get("beta", 0.5), 0.0, 1.0)


def op_gelu(node: Node, x: Tensor) -> Tensor:
    return torch.nn.functional.gelu(x, approximate=node.attrs.get("approximate", "none"))


def op_identity(node: Node, x: Tensor, *rest: Tensor | None) -> Tensor:
    return x  # also Dropout at inference


def op_einsum(node: Node, *xs: Tensor) -> Tensor:
    return torch.einsum(node.attrs["equation"], *xs)


TENSOR_OPS: dict[str, OpFn] = {
    "Add": _binary(torch.add), "Sub": _binary(torch.sub), "Mul": _binary(torch.mul), "Div": _binary(_div),
    "Pow": op_pow, "Mod": _binary(torch.fmod), "Equal": _binary(torch.eq), "Less": _binary(torch.lt),
    "Greater": _binary(torch.gt), "LessOrEqual": _binary(torch.le), "GreaterOrEqual": _binary(torch.ge),
    "And": _binary(torch.logical_and), "Or": _binary(torch.logical_or), "Xor": _binary(torch.logical_xor),
    "MatMul": _binary(torch.matmul),
    "Max": _variadic(torch.maximum), "Min": _variadic(torch.minimum), "Sum": _variadic(torch.add),
    "Not": _unary(torch.logical_not), "Relu": _unary(torch.relu), "Sigmoid": _unary(torch.sigmoid),
    "Tanh": _unary(torch.tanh), "Sqrt": _unary(torch.sqrt), "Exp": _unary(torch.exp),
    "Log": _unary(torch.log),
    "Neg": _unary(torch.neg), "Abs": _unary(torch.abs), "Reciprocal": _unary(torch.reciprocal),
    "Floor": _unary(torch.floor), "Ceil": _unary(torch.ceil), "Round": _unary(torch.round),
    "Sign": _unary(torch.sign), "Erf": _unary(torch.erf), "Sin": _unary(torch.sin), "Cos": _unary(torch.cos),
    "Softplus": _unary(torch.nn.functional.softplus), "HardSwish": _unary(torch.nn.functional.hardswish),
    "Selu": _unary(torch.selu), "Elu": op_elu, "HardSigmoid": op_hard_sigmoid, "Gelu": op_gelu,
    "LeakyRelu": op_leaky_relu, "PRelu": op_prelu,
    "ReduceMean": _reduce(torch.mean), "ReduceSum": _reduce(torch.sum), "ReduceMax": _reduce(_reduce_max),
    "ReduceMin": _reduce(_reduce_min), "ReduceL2": _reduce(_reduce_l2),
    "ReduceSumSquare": _reduce(_reduce_sumsq),
    "Constant": op_constant, "ConstantOfShape": op_constant_of_shape, "Cast": op_cast, "Shape": op_shape,
    "Reshape": op_reshape, "Flatten": op_flatten, "Transpose": op_transpose, "Concat": op_concat,
    "Split": op_split, "Slice": op_slice, "Squeeze": op_squeeze, "Unsqueeze": op_unsqueeze,
    "Expand": op_expand, "Tile": op_tile,
    "Clip": op_clip, "Softmax": op_softmax,
    "Gemm": op_gemm, "Identity": op_identity, "Dropout": op_identity, "Einsum": op_einsum,
}


def attribute_value(attr: Any) -> Any:
    """An ONNX AttributeProto as a Python value (tensors become CPU torch tensors, bytes become str)."""
    value = helper.get_attribute_value(attr)
    if isinstance(value, TensorProto):
        return tensor_from_proto(value)
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [v.decode() if isinstance(v, bytes) else v for v in value]
    return value
