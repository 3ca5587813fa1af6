"""ONNX network operators as PyTorch functions: convolutions, pools, normalisations, pads, resizes.

Same signature as :mod:`masquerade._backends.torch_ops`: ``op(node, *inputs)``. Resize follows the
ONNX coordinate transforms exactly: the cases ``F.interpolate`` computes identically go through it,
the others through a separable gather (any rank, any mode/rounding pair).
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from masquerade._backends.torch_ops import OpFn, Tensor, floats, ints

if TYPE_CHECKING:
    from masquerade._backends.onnx_to_torch import Node


def _torch_pad(pads: list[int], spatial: int) -> list[int]:
    """ONNX pads (all begins, then all ends) of the last ``spatial`` axes in F.pad's order."""
    begins, ends = pads[:spatial], pads[spatial:]
    out: list[int] = []
    for b, e in zip(reversed(begins), reversed(ends), strict=True):
        out += [b, e]
    return out


def _same_pads(
    node: Node, x: Tensor, kernel: list[int], strides: list[int], dilations: list[int]
) -> list[int]:
    """Explicit pads for ``auto_pad`` SAME_UPPER / SAME_LOWER / VALID (NOTSET: the ``pads`` attribute)."""
    spatial = len(kernel)
    mode = node.attrs.get("auto_pad", "NOTSET")
    if mode == "NOTSET":
        return list(node.attrs.get("pads", [0] * 2 * spatial))
    if mode == "VALID":
        return [0] * 2 * spatial
    begins, ends = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small = total // 2
        begins.append(small if mode == "SAME_UPPER" else total - small)
        ends.append(total - small if mode == "SAME_UPPER" else small)
    return begins + ends


def _prepared(
    node: Node, x: Tensor, kernel: list[int], fill: float = 0.0
) -> tuple[Tensor, list[int], list[int], list[int]]:
    """Input (padded here when the pads are asymmetric), strides, dilations and symmetric padding."""
    spatial = len(kernel)
    strides = list(node.attrs.get("strides", [1] * spatial))
    dilations = list(node.attrs.get("dilations", [1] * spatial))
    pads = _same_pads(node, x, kernel, strides, dilations)
    if pads[:spatial] != pads[spatial:]:
        x = F.pad(x, _torch_pad(pads, spatial), value=fill)
        return x, strides, dilations, [0] * spatial
    return x, strides, dilations, pads[:spatial]


_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def op_conv(node: Node, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    kernel = list(w.shape[2:])
    x, strides, dilations, padding = _prepared(node, x, kernel)
    return _CONV[len(kernel)](x, w, b, strides, padding, dilations, node.attrs.get("group", 1))


def op_conv_transpose(node: Node, x: Tensor, w: Tensor, b: Tensor | None = None) -> Tensor:
    spatial = w.dim() - 2
    if "output_shape" in node.attrs or node.attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise NotImplementedError(f"ConvTranspose {node.name!r}: output_shape / auto_pad are not supported")
    strides = list(node.attrs.get("strides", [1] * spatial))
    dilations = list(node.attrs.get("dilations", [1] * spatial))
    extra = list(node.attrs.get("output_padding", [0] * spatial))
    pads = list(node.attrs.get("pads", [0] * 2 * spatial))
    group = node.attrs.get("group", 1)
    fn = _CONV_T[spatial]
    if pads[:spatial] == pads[spatial:]:
        return fn(x, w, b, strides, pads[:spatial], extra, group, dilations)
    out = fn(x, w, b, strides, 0, extra, group, dilations)  # full output, then crop the asymmetric pads
    index = [slice(None), slice(None)] + [
        slice(pads[i], out.shape[2 + i] - pads[spatial + i]) for i in range(spatial)
    ]
    return out[tuple(index)]


def op_batch_norm(node: Node, x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    return F.batch_norm(x, mean, var, scale, bias, False, 0.0, node.attrs.get("epsilon", 1e-5))


def op_instance_norm(node: Node, x: Tensor, scale: Tensor, bias: Tensor) -> Tensor:
    return F.instance_norm(x, weight=scale, bias=bias, eps=node.attrs.get("epsilon", 1e-5))


def op_layer_norm(node: Node, x: Tensor, scale: Tensor, bias: Tensor | None = None) -> Tensor:
    axis = node.attrs.get("axis", -1)
    axis = axis + x.dim() if axis < 0 else axis
    shape = tuple(x.shape[axis:])
    return F.layer_norm(x, shape, scale.expand(shape), None if bias is None else bias.expand(shape),
                        node.attrs.get("epsilon", 1e-5))


def op_pad(node: Node, x: Tensor, pads_in: Tensor | None = None, value: Tensor | None = None,
           axes: Tensor | None = None) -> Tensor:
    pads = ints(pads_in) if pads_in is not None else list(node.attrs["pads"])
    fill_list = floats(value)
    fill = fill_list[0] if fill_list else node.attrs.get("value", 0.0)
    rank = x.dim()
    if axes is not None:  # opset 18: pads only for the listed axes
        full = [0] * 2 * rank
        listed = [a + rank if a < 0 else a for a in ints(axes)]
        for i, a in enumerate(listed):
            full[a], full[rank + a] = pads[i], pads[len(listed) + i]
        pads = full
    first = next((i for i in range(rank) if pads[i] or pads[rank + i]), rank)
    spatial = rank - first
    if spatial == 0:
        return x
    torch_pads = _torch_pad(pads[first:rank] + pads[rank + first:], spatial)
    mode = node.attrs.get("mode", "constant")
    if mode == "constant":
        return F.pad(x, torch_pads, value=fill)
    torch_mode = {"reflect": "reflect", "edge": "replicate", "wrap": "circular"}.get(mode)
    if torch_mode is None:
        raise NotImplementedError(f"Pad mode {mode!r} is not supported")
    if spatial > 3 or spatial > rank - 1:
        raise NotImplementedError(f"Pad {node.name!r}: {mode} padding of leading axes is not supported")
    if rank - spatial > 2:  # torch pads at most the last 3 axes of a (N, C, ...) tensor: fold the rest
        lead = x.shape[: rank - spatial]
        padded = F.pad(x.reshape(1, -1, *x.shape[rank - spatial:]), torch_pads, mode=torch_mode)
        return padded.reshape(*lead, *padded.shape[2:])
    return F.pad(x, torch_pads, mode=torch_mode)


def _source_coords(mode: str, out_len: int, in_len: int, scale: float, device: torch.device) -> Tensor:
    """Where each output index samples the input along one axis (ONNX Resize's coordinate transforms)."""
    x = torch.arange(out_len, dtype=torch.float64, device=device)
    if mode == "half_pixel":
        return (x + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if out_len > 1 else torch.zeros_like(x)
    if mode == "align_corners":
        return x * ((in_len - 1) / (out_len - 1)) if out_len > 1 else torch.zeros_like(x)
    if mode == "asymmetric":
        return x / scale
    if mode == "tf_half_pixel_for_nn":
        return (x + 0.5) / scale
    if mode == "half_pixel_symmetric":
        adjustment = out_len / (scale * in_len)
        return in_len / 2 * (1 - adjustment) + (x + 0.5) / scale - 0.5
    raise NotImplementedError(f"Resize coordinate_transformation_mode {mode!r} is not supported")


_ROUND = {
    "round_prefer_floor": lambda c: torch.ceil(c - 0.5), "round_prefer_ceil": lambda c: torch.floor(c + 0.5),
    "floor": torch.floor, "ceil": torch.ceil,
}


def _resize_generic(
    x: Tensor, out_shape: list[int], scales: list[float], mode: str, coord: str, nearest: str
) -> Tensor:
    for axis, (n_out, n_in, s) in enumerate(zip(out_shape, x.shape, scales, strict=True)):
        if n_out == n_in and s == 1.0:
            continue
        c = _source_coords(coord, n_out, n_in, s, x.device)
        if mode == "nearest":
            idx = _ROUND[nearest](c).clamp(0, n_in - 1).long()
            x = x.index_select(axis, idx)
            continue
        lo = torch.floor(c)
        w = (c - lo).to(x.dtype)
        i0, i1 = lo.long().clamp(0, n_in - 1), (lo.long() + 1).clamp(0, n_in - 1)
        view = [1] * x.dim()
        view[axis] = n_out
        w = w.reshape(view)
        x = x.index_select(axis, i0) * (1 - w) + x.index_select(axis, i1) * w
    return x


def _resize(node: Node, x: Tensor, scales_in: Tensor | None, sizes_in: Tensor | None, coord: str) -> Tensor:
    mode = node.attrs.get("mode", "nearest")
    if node.attrs.get("antialias", 0) or "axes" in node.attrs:
        raise NotImplementedError(f"Resize {node.name!r}: antialias / axes are not supported")
    nearest = node.attrs.get("nearest_mode", "round_prefer_floor")
    if ints(sizes_in):
        out = ints(sizes_in)
        out[0] = x.shape[0]  # batch 1 baked into ``sizes`` must not pin the live batch
        scales = [o / i for o, i in zip(out, x.shape, strict=True)]
        from_scales = False
    else:
        scales = floats(scales_in)
        out = [math.floor(i * s) for i, s in zip(x.shape, scales, strict=True)]
        from_scales = True
    if out == list(x.shape):
        return x
    if mode == "cubic":
        if x.dim() != 4 or coord not in ("half_pixel", "pytorch_half_pixel", "align_corners") or \
                node.attrs.get("cubic_coeff_a", -0.75) != -0.75 or node.attrs.get("exclude_outside", 0):
            raise NotImplementedError(f"Resize {node.name!r}: this cubic variant is not supported")
        return _interpolate(x, out, scales, "bicubic", coord == "align_corners", from_scales)
    if mode not in ("nearest", "linear"):
        raise NotImplementedError(f"Resize mode {mode!r} is not supported")
    spatial_only = scales[:2] == [1.0, 1.0] and x.dim() == 4
    if spatial_only and mode == "nearest" and coord == "asymmetric" and nearest == "floor":
        return _interpolate(x, out, scales, "nearest", None, from_scales)
    if spatial_only and mode == "linear" and (coord == "align_corners" or (coord == "pytorch_half_pixel") or (
            coord == "half_pixel" and min(out[2:]) > 1)):
        return _interpolate(x, out, scales, "bilinear", coord == "align_corners", from_scales)
    return _resize_generic(x, out, scales, mode, coord, nearest)


def _interpolate(x: Tensor, out: list[int], scales: list[float], mode: str, corners: bool | None,
                 from_scales: bool) -> Tensor:
    if from_scales and not corners:  # ONNX maps coordinates with the given scale, not out/in
        return F.interpolate(x, scale_factor=scales[2:], mode=mode, align_corners=corners,
                             recompute_scale_factor=False)
    return F.interpolate(x, size=out[2:], mode=mode, align_corners=corners)


def op_resize(node: Node, x: Tensor, *rest: Tensor | None) -> Tensor:
    if node.opset < 11:  # Resize-10: (X, scales), asymmetric coordinates like Upsample
        return _resize(node, x, rest[0], None, "asymmetric")
    _roi, scales, sizes = [*list(rest), None, None, None][:3]
    coord = node.attrs.get("coordinate_transformation_mode", "half_pixel")
    if coord == "tf_crop_and_resize":
        raise NotImplementedError("Resize tf_crop_and_resize is not supported")
    return _resize(node, x, scales, sizes, coord)


def op_upsample(node: Node, x: Tensor, scales: Tensor | None = None) -> Tensor:
    if scales is None:
        scales = [float(s) for s in node.attrs["scales"]]
    mode = "linear" if node.attrs.get("mode", "nearest") in ("linear", "bilinear") else "nearest"
    as_resize = replace(node, attrs={"mode": mode, "nearest_mode": "floor"})  # Upsample = asymmetric Resize
    return _resize(as_resize, x, scales, None, "asymmetric")


def op_max_pool(node: Node, x: Tensor) -> Tensor:
    kernel = list(node.attrs["kernel_shape"])
    x, strides, dilations, padding = _prepared(node, x, kernel, fill=float("-inf"))
    fn: Any = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[len(kernel)]
    return fn(x, kernel, strides, padding, dilations, ceil_mode=bool(node.attrs.get("ceil_mode", 0)))


def op_average_pool(node: Node, x: Tensor) -> Tensor:
    kernel = list(node.attrs["kernel_shape"])
    spatial = len(kernel)
    strides = list(node.attrs.get("strides", [1] * spatial))
    pads = _same_pads(node, x, kernel, strides, [1] * spatial)
    include = bool(node.attrs.get("count_include_pad", 0))
    ceil = bool(node.attrs.get("ceil_mode", 0))
    fn: Any = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[spatial]
    if pads[:spatial] == pads[spatial:] and all(p <= k // 2 for p, k in zip(pads, kernel, strict=False)):
        return fn(x, kernel, strides, pads[:spatial], ceil, include)
    if ceil:
        raise NotImplementedError(f"AveragePool {node.name!r}: asymmetric pads with ceil_mode")
    padded = F.pad(x, _torch_pad(pads, spatial))
    mean = fn(padded, kernel, strides, 0, False, True)
    if include:
        return mean
    ones = F.pad(torch.ones_like(x[:1, :1]), _torch_pad(pads, spatial))
    return mean / fn(ones, kernel, strides, 0, False, True)  # divide by the real (unpadded) count


def op_global_average_pool(node: Node, x: Tensor) -> Tensor:
    return x.mean(dim=tuple(range(2, x.dim())), keepdim=True)


def op_global_max_pool(node: Node, x: Tensor) -> Tensor:
    return x.amax(dim=tuple(range(2, x.dim())), keepdim=True)


def op_depth_to_space(node: Node, x: Tensor) -> Tensor:
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    if node.attrs.get("mode", "DCR") == "CRD":
        return F.pixel_shuffle(x, b)
    y = x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


def op_space_to_depth(node: Node, x: Tensor) -> Tensor:
    b = node.attrs["blocksize"]
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


def op_grid_sample(node: Node, x: Tensor, grid: Tensor) -> Tensor:
    mode = {"linear": "bilinear", "cubic": "bicubic"}.get(node.attrs.get("mode", "bilinear"),
                                                          node.attrs.get("mode", "bilinear"))
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode=node.attrs.get("padding_mode", "zeros"),
                         align_corners=bool(node.attrs.get("align_corners", 0)))


NN_OPS: dict[str, OpFn] = {
    "Conv": op_conv, "ConvTranspose": op_conv_transpose, "BatchNormalization": op_batch_norm,
    "InstanceNormalization": op_instance_norm, "LayerNormalization": op_layer_norm, "Pad": op_pad,
    "Resize": op_resize, "Upsample": op_upsample, "MaxPool": op_max_pool, "AveragePool": op_average_pool,
    "GlobalAveragePool": op_global_average_pool, "GlobalMaxPool": op_global_max_pool,
    "DepthToSpace": op_depth_to_space, "SpaceToDepth": op_space_to_depth, "GridSample": op_grid_sample,
}
