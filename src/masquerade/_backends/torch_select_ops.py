"""ONNX gather, selection, scatter and random operators as PyTorch functions (same signature as torch_ops).

These appear in codebook-lookup restorers (CodeFormer: TopK / ArgMin / ScatterElements / OneHot) and
in StyleGAN-style decoders exported with random noise (RandomNormalLike). A ``seed`` attribute gets
its own generator, so seeded graphs repeat and no global random state is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from masquerade._backends.torch_ops import ONNX_TO_TORCH_DTYPE, OpFn, Tensor, aligned, ints

if TYPE_CHECKING:
    from masquerade._backends.onnx_to_torch import Node


def _positive(index: Tensor, size: int) -> Tensor:
    return torch.where(index < 0, index + size, index)


def op_gather(node: Node, x: Tensor, indices: Tensor) -> Tensor:
    axis = node.attrs.get("axis", 0)
    axis = axis + x.dim() if axis < 0 else axis
    idx = indices.to(device=x.device, dtype=torch.int64)
    idx = torch.where(idx < 0, idx + x.shape[axis], idx)
    out = x.index_select(axis, idx.reshape(-1))
    return out.reshape((*x.shape[:axis], *indices.shape, *x.shape[axis + 1:]))

def op_gather_elements(node: Node, x: Tensor, indices: Tensor) -> Tensor:
    axis = node.attrs.get("axis", 0)
    idx = indices.to(device=x.device, dtype=torch.int64)
    return torch.gather(x, axis, torch.where(idx < 0, idx + x.shape[axis], idx))

def op_where(node: Node, cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    a, b = aligned(a, b)
    return torch.where(cond.to(a.device), a, b)

def op_range(node: Node, start: Tensor, limit: Tensor, delta: Tensor) -> Tensor:
    return torch.arange(start.item(), limit.item(), delta.item(), dtype=start.dtype, device=start.device)

def op_argmax(node: Node, x: Tensor) -> Tensor:
    return torch.argmax(x, dim=node.attrs.get("axis", 0), keepdim=bool(node.attrs.get("keepdims", 1)))


def op_topk(node: Node, x: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
    axis = node.attrs.get("axis", -1)
    values, indices = torch.topk(x, ints(k)[0], dim=axis, largest=bool(node.attrs.get("largest", 1)),
                                 sorted=bool(node.attrs.get("sorted", 1)))
    return values, indices


def op_argmin(node: Node, x: Tensor) -> Tensor:
    return torch.argmin(x, dim=node.attrs.get("axis", 0), keepdim=bool(node.attrs.get("keepdims", 1)))


def op_scatter_elements(node: Node, data: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
    axis = node.attrs.get("axis", 0)
    idx = _positive(indices.to(device=data.device, dtype=torch.int64), data.shape[axis])
    reduction = node.attrs.get("reduction", "none")
    if reduction == "none":
        return torch.scatter(data, axis, idx, updates.to(data.device))
    torch_reduce = {"add": "sum", "mul": "prod", "max": "amax", "min": "amin"}[reduction]
    return torch.scatter_reduce(data, axis, idx, updates.to(data.device), torch_reduce)


def op_scatter_nd(node: Node, data: Tensor, indices: Tensor, updates: Tensor) -> Tensor:
    if node.attrs.get("reduction", "none") != "none":
        raise NotImplementedError(f"ScatterND {node.name!r}: reductions are not supported")
    k = indices.shape[-1]
    idx = indices.to(device=data.device, dtype=torch.int64).reshape(-1, k)
    for axis in range(k):
        idx[:, axis] = _positive(idx[:, axis], data.shape[axis])
    out = data.clone()
    out[tuple(idx.T)] = updates.to(data.device).reshape(-1, *data.shape[k:])
    return out


def op_one_hot(node: Node, indices: Tensor, depth: Tensor, values: Tensor) -> Tensor:
    n = ints(depth)[0]
    idx = _positive(indices.to(torch.int64), n)
    hot = torch.nn.functional.one_hot(idx, n)
    axis = node.attrs.get("axis", -1)
    if axis != -1:
        hot = hot.movedim(-1, axis if axis >= 0 else axis + 1)
    off, on = values.reshape(-1)[0], values.reshape(-1)[1]
    return torch.where(hot.bool(), on.to(hot.device), off.to(hot.device))


def _generator(node: Node, device: torch.device) -> torch.Generator | None:
    if "seed" not in node.attrs:
        return None
    return torch.Generator(device=device).manual_seed(int(node.attrs["seed"]))


def _random_dtype(node: Node, like: Tensor | None) -> torch.dtype:
    if node.float_dtype is not None:
        return node.float_dtype
    if "dtype" in node.attrs:
        return ONNX_TO_TORCH_DTYPE[int(node.attrs["dtype"])]
    return like.dtype if like is not None and like.is_floating_point() else torch.float32


def op_random_normal_like(node: Node, like: Tensor) -> Tensor:
    noise = torch.randn(like.shape, generator=_generator(node, like.device), device=like.device,
                        dtype=_random_dtype(node, like))
    return noise * node.attrs.get("scale", 1.0) + node.attrs.get("mean", 0.0)


def op_random_uniform_like(node: Node, like: Tensor) -> Tensor:
    lo, hi = node.attrs.get("low", 0.0), node.attrs.get("high", 1.0)
    noise = torch.rand(like.shape, generator=_generator(node, like.device), device=like.device,
                       dtype=_random_dtype(node, like))
    return noise * (hi - lo) + lo


def op_random_normal(node: Node) -> Tensor:
    shape = list(node.attrs["shape"])
    generator = _generator(node, torch.device("cpu"))
    noise = torch.randn(shape, generator=generator, dtype=_random_dtype(node, None))
    return noise * node.attrs.get("scale", 1.0) + node.attrs.get("mean", 0.0)


SELECT_OPS: dict[str, OpFn] = {
    "Gather": op_gather, "GatherElements": op_gather_elements, "Where": op_where, "Range": op_range,
    "ArgMax": op_argmax,
    "TopK": op_topk, "ArgMin": op_argmin, "ScatterElements": op_scatter_elements,
    "ScatterND": op_scatter_nd, "OneHot": op_one_hot, "RandomNormalLike": op_random_normal_like,
    "RandomUniformLike": op_random_uniform_like, "RandomNormal": op_random_normal,
}
RANDOM_OPS = frozenset({"RandomNormalLike", "RandomUniformLike", "RandomNormal"})
"""Operators that must not be folded into constants (each call draws new noise)."""
