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
a = -0.75); OpenCV's Lanczos-4 has no ``grid_sample`` counterpart, bicubic stands in for it.

Crops that shrink by more than 2x are first area-averaged by an integer factor (as
:func:`masquerade.geometry.align.warp_crop` pre-shrinks), so small faces in big frames do not alias.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.typing import NDArray

from masquerade.geometry.align import crop_footprint, invert

Tensor = torch.Tensor


def frame_to_tensor(image: NDArray[np.uint8], device: str | torch.device) -> Tensor:
    """(H, W, 3) uint8 BGR -> (1, 3, H, W) float32 on ``device`` (uploaded as uint8: 4x fewer bytes)."""
    t = torch.from_numpy(np.ascontiguousarray(image)).to(device, non_blocking=True)
    return t.permute(2, 0, 1).unsqueeze(0).float()


def tensor_to_frame(frame: Tensor) -> NDArray[np.uint8]:
    """(1, 3, H, W) or (3, H, W) float 0..255 -> (H, W, 3) uint8, rounded (downloaded as uint8)."""
    f = frame[0] if frame.dim() == 4 else frame
    return f.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().cpu().numpy()


def _grid(affines: NDArray[np.float64], out_w: int, out_h: int, in_w: int, in_h: int,
          device: torch.device) -> Tensor:
    """(N, out_h, out_w, 2) grid_sample grid for frame-to-output matrices (OpenCV convention)."""
    inv = torch.as_tensor(np.stack([invert(a) for a in affines]), dtype=torch.float64, device=device)
    ys, xs = torch.meshgrid(torch.arange(out_h, dtype=torch.float64, device=device),
                            torch.arange(out_w, dtype=torch.float64, device=device), indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)  # (h, w, 3)
    src = torch.einsum("hwk,njk->nhwj", pts, inv)  # (N, h, w, 2) source pixel coordinates
    scale = torch.tensor([2.0 / in_w, 2.0 / in_h], dtype=torch.float64, device=device)
    return ((src + 0.5) * scale - 1.0).float()


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
    grid = _grid(mats, w, h, images.shape[-1], images.shape[-2], images.device)
    src = images if images.shape[0] == len(mats) else images.expand(len(mats), -1, -1, -1)
    if not src.is_floating_point():
        src = src.float()
    out = F.grid_sample(src, grid.to(src.dtype), mode=mode, padding_mode=border, align_corners=False)
    return out


def _shrink_factor(affine: NDArray[np.float64]) -> int:
    """Integer area-averaging factor k for a crop shrinking more than 2x: the warp left after it
    shrinks by 1x to 2x (scale * k in (0.5, 1]), which bilinear / bicubic sampling does not alias."""
    scale = math.sqrt(abs(float(np.linalg.det(affine[:, :2]))))
    return int(1.0 / scale) if 0 < scale < 0.5 else 1


def crop_faces(
    frame: Tensor,
    affines: NDArray[np.floating],
    size: int,
    mode: str = "bicubic",
    border: str = "border",
) -> Tensor:
    """(N, C, size, size) aligned crops of one (1, C, H, W) frame by N frame-to-crop matrices.

    Defaults follow :func:`masquerade.geometry.align.crop_faces`: replicated edge, the best
    interpolation available (bicubic for Lanczos-4). Faces that need a pre-shrink share one
    area-averaged copy of the frame per shrink factor.
    """
    mats = np.asarray(affines, dtype=np.float64).reshape(-1, 2, 3)
    out = torch.empty((len(mats), frame.shape[1], size, size), dtype=torch.float32, device=frame.device)
    factors = np.array([_shrink_factor(m) for m in mats])
    for k in np.unique(factors):
        idx = np.flatnonzero(factors == k)
        source, adjusted = frame.float(), mats[idx].copy()
        if k > 1:  # pooled pixel i covers frame pixels [i k, (i + 1) k): centre at i k + (k - 1) / 2
            source = F.avg_pool2d(source, int(k), ceil_mode=True, count_include_pad=False)
            offset = (k - 1) / 2.0
            adjusted[:, :, 2] = mats[idx, :, 2] + mats[idx, :, :2] @ np.array([offset, offset])
            adjusted[:, :, :2] = mats[idx, :, :2] * k
        crops = warp_affine(source, adjusted, (size, size), mode, border)
        out[torch.as_tensor(idx, device=frame.device)] = crops
    return out.clamp_(0.0, 255.0)  # bicubic overshoot: OpenCV's uint8 crops saturate the same way


def box_mask(
    size: int, erode: float = 0.04, feather: float = 0.12, device: str | torch.device = "cpu"
) -> Tensor:
    """(size, size) feathered box mask, as :func:`masquerade.stages.paste.box_mask` (smoothstep ramp)."""
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
    mode: str = "bicubic",
) -> Tensor:
    """``frame`` (1, C, H, W) float 0..255 with N ``crops`` (N, C, S, S) blended in under ``masks``.

    ``masks`` is (N, S, S) or one (S, S) for all; ``affines`` are the frame-to-crop matrices the crops
    were made with. Like :func:`masquerade.stages.paste.paste_back`: only each crop's footprint is
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
