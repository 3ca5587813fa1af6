"""Aligned crops and paste-back on the GPU, batched, with ``cv2.warpAffine``'s conventions.

With these the swap path keeps a frame on the device from upload to download: the frame crosses
the bus once each way (``frame_to_tensor`` / ``tensor_to_frame``), crops come out of one
``grid_sample`` call for all faces, model outputs are pasted back under feathered masks on the
frame's device.

Conventions (as OpenCV): a 2x3 matrix ``M`` maps source pixels to destination pixels, pixel centres
at integer coordinates; the destination pixel (x, y) samples the source at ``M^-1 (x, y)``.
``grid_sample`` with ``align_corners=False`` puts pixel centres at ``(2 i + 1) / size - 1``, which is
what the grid below is built in. Borders: ``"zeros"`` = BORDER_CONSTANT 0, ``"border"`` =
BORDER_REPLICATE. Interpolation: ``"bilinear"`` = INTER_LINEAR, ``"bicubic"`` = INTER_CUBIC (both
through ``grid_sample``), ``"lanczos4"`` = INTER_LANCZOS4, which ``grid_sample`` lacks: 64 gathered
taps at the coordinates OpenCV itself forms (fixed point, 1/32 pixel), so it matches OpenCV to
float rounding. Lanczos-4 is the default of crops and paste-back, as in
:mod:`masquerade.geometry.align` and :mod:`masquerade._stages.paste`, and crops shrinking more than
2x are area-averaged first exactly as there: the device path gives the CPU path's pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from masquerade.geometry.align import crop_footprint, invert

PRESHRINK_BELOW = 0.5
"""Crops shrinking the frame more than 2x are area-averaged first (as geometry.align does)."""

Tensor = torch.Tensor


def frame_to_tensor(image: NDArray[np.uint8], device: str | torch.device) -> Tensor:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 on ``device`` (uploaded as uint8: 4x fewer bytes)."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True)
    return t.permute(2, 0, 1).unsqueeze(0).float()


def tensor_to_frame(frame: Tensor) -> NDArray[np.uint8]:
    """(1, 3, H, W) or (3, H, W) float 0..255 -> (H, W, 3) uint8, rounded (downloaded as uint8)."""
    f = frame[0] if frame.dim() == 4 else frame
    return f.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def _source_pixels(affines: NDArray[np.float64], out_w: int, out_h: int, device: torch.device) -> Tensor:
    """(N, out_h, out_w, 2) float64 source pixel coordinates of every output pixel (OpenCV convention)."""
    inv = torch.as_tensor(np.stack([invert(a) for a in affines]), dtype=torch.float64, device=device)
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=torch.float64, device=device),
                            torch.arange(out_w, dtype=torch.float64, device=device), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (h, w, 3)
    return torch.einsum("hwk,njk->nhwj", pts, inv)


def _opencv_pixels(affines: NDArray[np.float64], out_w: int, out_h: int, device: torch.device) -> Tensor:
    """Source coordinates exactly as ``cv2.warpAffine`` forms them for table-driven interpolation:
    fixed point with 10 fractional bits per term, then rounded to 1/32 pixel (INTER_TAB_SIZE)."""
    inv = torch.as_tensor(np.stack([invert(a) for a in affines]), dtype=torch.float64, device=device)
    xs = torch.arange(out_w, dtype=torch.float64, device=device).reshape(1, 1, -1)
    ys = torch.arange(out_h, dtype=torch.float64, device=device).reshape(1, -1, 1)
    coords = []
    for r in range(2):
        a = torch.round(inv[:, r, 0].reshape(-1, 1, 1) * xs * 1024.0)
        b = torch.round((inv[:, r, 1].reshape(-1, 1, 1) * ys + inv[:, r, 2].reshape(-1, 1, 1)) * 1024.0)
        coords.append(torch.floor((a + b + 16.0) / 32.0) / 32.0)
    return torch.stack(coords, dim=-1)


def _lanczos_taps(frac: Tensor) -> Tensor:
    """(..., 8) normalised Lanczos-4 weights of taps floor(x) - 3 .. floor(x) + 4, as OpenCV's."""
    d = torch.arange(-3, 5, dtype=torch.float64, device=frac.device) - frac.unsqueeze(-1)
    safe = torch.where(d.abs() < 1e-9, torch.ones_like(d), d)
    w = torch.where(d.abs() < 1e-9, torch.ones_like(d),
                    4.0 * torch.sin(math.pi * safe) * torch.sin(math.pi * safe / 4.0) / (math.pi * safe) ** 2)
    return (w / w.sum(-1, keepdim=True)).float()


def _lanczos4(src: Tensor, pix: Tensor, border: str) -> Tensor:
    """``cv2.INTER_LANCZOS4`` sampling of (1 or N, C, H, W) ``src`` at (N, h, w, 2) pixel coordinates.

    ``grid_sample`` has no Lanczos mode: 64 gathered taps, accumulated 8 at a time (memory stays at
    a few crops' worth). ``border``: "zeros" (constant 0) or "border" (replicated edge).
    """
    n, (c, height, width) = pix.shape[0], src.shape[1:]
    x, y = pix[..., 0], pix[..., 1]
    x0, y0 = torch.floor(x), torch.floor(y)
    wx, wy = _lanczos_taps(x - x0), _lanczos_taps(y - y0)
    x0, y0 = x0.long() - 3, y0.long() - 3
    flat = src.float().reshape(src.shape[0], c, -1).permute(1, 0, 2).reshape(c, -1)  # one index space
    base = (torch.arange(n, device=src.device) * (height * width) if src.shape[0] == n
            else torch.zeros(n, dtype=torch.long, device=src.device)).reshape(n, 1, 1)
    out = torch.zeros((c, *x.shape), dtype=torch.float32, device=src.device)
    for j in range(8):
        yy = y0 + j
        row = torch.zeros_like(out)
        for i in range(8):
            xx = x0 + i
            w = wx[..., i]
            if border == "zeros":
                w = w * ((xx >= 0) & (xx < width) & (yy >= 0) & (yy < height))
            index = base + yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1)
            row += flat[:, index] * w
        out += row * wy[..., j]
    return out.permute(1, 0, 2, 3)


def warp_affine(
    images: Tensor,
    affines: NDArray[np.floating] | Sequence[NDArray[np.floating]],
    size: tuple[int, int],
    mode: str = "bilinear",
    border: str = "zeros",
) -> Tensor:
    """``cv2.warpAffine`` of (1 or N, C, H, W) ``images`` by N 2x3 ``affines`` into ``size`` = (w, h).

    One image is shared by all N matrices (N crops of one frame). Returns (N, C, h, w) float.
    """
    mats = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
    w, h = size
    if mode == "lanczos4":
        return _lanczos4(images, _opencv_pixels(mats, w, h, images.device), border)
    pix = _source_pixels(mats, w, h, images.device)
    scale = torch.tensor([2.0 / images.shape[-1], 2.0 / images.shape[-2]], dtype=torch.float64,
                         device=pix.device)
    grid = (pix + 0.5) * scale - 1.0  # pixel centres -> grid_sample's [-1, 1] (align_corners=False)
    src = images if images.shape[0] == len(mats) else images.expand(len(mats), -1, -1, -1)
    if not src.is_floating_point():
        src = src.float()
    return F.grid_sample(src, grid.to(src.dtype), mode=mode, padding_mode=border, align_corners=False)


def _area_weights(n_out: int, n_in: int, device: torch.device) -> Tensor:
    """(n_out, n_in) ``cv2.INTER_AREA`` weights: each output pixel averages its input interval,
    edge pixels by the fraction they overlap."""
    step = n_in / n_out
    starts = torch.arange(n_out, dtype=torch.float64, device=device).unsqueeze(1) * step
    left = torch.arange(n_in, dtype=torch.float64, device=device).unsqueeze(0)
    overlap = (torch.minimum(starts + step, left + 1) - torch.maximum(starts, left)).clamp(min=0.0)
    return (overlap / step).float()


def _preshrunk(frame: Tensor, affine: NDArray[np.float64], size: int) -> tuple[Tensor, NDArray[np.float64]]:
    """What :func:`masquerade.geometry.align.warp_crop` warps for a crop shrinking more than 2x: the
    crop's region area-averaged to the crop's scale (rounded, as its uint8 image), and its matrix."""
    scale = math.sqrt(abs(float(np.linalg.det(affine[:, :2]))))
    if scale >= PRESHRINK_BELOW or scale == 0.0:
        return frame, affine
    box = crop_footprint(affine, size, frame.shape[-2:], margin=int(np.ceil(8 / scale)) + 2)
    if box is None:
        return frame, affine
    x1, y1, x2, y2 = box
    w, h = max(round((x2 - x1) * scale), 1), max(round((y2 - y1) * scale), 1)
    roi = frame[:, :, y1:y2, x1:x2].float()
    small = _area_weights(h, y2 - y1, frame.device) @ roi @ _area_weights(w, x2 - x1, frame.device).T
    sx, sy = w / (x2 - x1), h / (y2 - y1)
    to_frame = np.array([[1 / sx, 0, 0.5 / sx - 0.5 + x1], [0, 1 / sy, 0.5 / sy - 0.5 + y1], [0, 0, 1]])
    return small.round().clamp(0, 255), np.asarray(affine, dtype=np.float64) @ to_frame


def crop_faces(
    frame: Tensor,
    affines: NDArray[np.floating],
    size: int,
    mode: str = "lanczos4",
    border: str = "border",
) -> Tensor:
    """(N, C, size, size) aligned crops of one (1, C, H, W) frame by N frame-to-crop matrices.

    As :func:`masquerade.geometry.align.crop_faces` makes them: Lanczos-4, replicated edge, crops
    shrinking more than 2x area-averaged first, values rounded and clipped like its uint8 crops.
    Crops that need no pre-shrink come out of one batched warp.
    """
    mats = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
    out = torch.empty((len(mats), frame.shape[1], size, size), dtype=torch.float32, device=frame.device)
    direct = []
    for i, m in enumerate(mats):
        source, adjusted = _preshrunk(frame, m, size)
        if source is frame:
            direct.append(i)
        else:
            out[i] = warp_affine(source, adjusted[None], (size, size), mode, border)[0]
    if direct:
        batch = warp_affine(frame, mats[direct], (size, size), mode, border)
        out[torch.as_tensor(direct, device=frame.device)] = batch
    return out.round_().clamp_(0.0, 255.0)


def box_mask(
    size: int, erode: float = 0.04, feather: float = 0.12, device: str | torch.device = "cpu"
) -> Tensor:
    """(size, size) feathered box mask, as :func:`masquerade._stages.paste.box_mask` (smoothstep ramp)."""
    centres = torch.arange(size, dtype=torch.float32, device=device) + 0.5
    edge = torch.minimum(centres, size - centres)
    t = ((edge - erode * size) / max(feather * size, 1e-6)).clamp(0.0, 1.0)
    ramp = t * t * (3.0 - 2.0 * t)
    return torch.outer(ramp, ramp)


def paste_back(
    frame: Tensor,
    crops: Tensor,
    masks: Tensor,
    affines: NDArray[np.floating],
    mode: str = "lanczos4",
) -> Tensor:
    """``frame`` (1, C, H, W) float 0..255 with N ``crops`` (N, C, S, S) blended in under ``masks``.

    ``masks`` is (N, S, S) or one (S, S) for all; ``affines`` are the frame-to-crop matrices the crops
    were made with. Like :func:`masquerade._stages.paste.paste_back`: only each crop's footprint is
    touched, the crop is warped back with a replicated edge and the mask bilinearly with a zero
    edge, each paste is rounded, later faces go over earlier ones. The N warps run as one batch on
    boxes of the largest footprint's size.
    """
    mats = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
    height, width = frame.shape[-2:]
    size = crops.shape[-1]
    boxes = [crop_footprint(m, size, (height, width)) for m in mats]
    live = [i for i, b in enumerate(boxes) if b is not None]
    if not live:
        return frame.clone()
    bw = max(boxes[i][2] - boxes[i][0] for i in live)  # type: ignore[index]
    bh = max(boxes[i][3] - boxes[i][1] for i in live)  # type: ignore[index]
    to_roi = mats[live].copy()
    for j, i in enumerate(live):  # crop -> box-local: translate the frame by the box's corner
        x1, y1 = boxes[i][:2]  # type: ignore[index]
        to_roi[j, :, 2] = mats[i, :, 2] + mats[i, :, :2] @ np.array([x1, y1], np.float64)
    # Inverse direction: each box pixel samples its crop, i.e. warp crops by the crop->box matrices.
    crop_to_box = np.stack([invert(m) for m in to_roi])
    idx = torch.as_tensor(live, device=crops.device)
    faces = warp_affine(crops[idx].float(), crop_to_box, (bw, bh), mode, "border")
    mask_stack = masks.expand(len(mats), -1, -1) if masks.dim() == 2 else masks
    weights = warp_affine(mask_stack[idx].unsqueeze(1).float(), crop_to_box, (bw, bh), "bilinear", "zeros")
    out = frame.float().clone()
    for j, i in enumerate(live):
        x1, y1, x2, y2 = boxes[i]  # type: ignore[misc]
        roi = out[:, :, y1:y2, x1:x2]
        face = faces[j : j + 1, :, : y2 - y1, : x2 - x1]
        alpha = weights[j : j + 1, :, : y2 - y1, : x2 - x1]
        out[:, :, y1:y2, x1:x2] = torch.round(roi + alpha * (face - roi)).clamp(0, 255)
    return out
