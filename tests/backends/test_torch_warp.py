"""GPU-path crops and paste-back against OpenCV and the CPU stages, on a real photo (CPU torch)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from masquerade._backends import torch_warp as tw  # noqa: E402
from masquerade._stages.paste import box_mask, paste_back  # noqa: E402
from masquerade.geometry.align import warp_crop  # noqa: E402

C, S = 0.8 * np.cos(0.3), 0.8 * np.sin(0.3)
ROTATED = np.array([[C, -S, 20.5], [S, C, -30.25]])
SHEARED = np.array([[1.3, 0.1, -100.0], [-0.05, 1.2, -80.0]])
MODES = {"bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "lanczos4": cv2.INTER_LANCZOS4}
BORDERS = {"zeros": cv2.BORDER_CONSTANT, "border": cv2.BORDER_REPLICATE}


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("border", list(BORDERS))
def test_warp_matches_cv2_warp_affine(astronaut, mode: str, border: str) -> None:
    frame = tw.frame_to_tensor(astronaut, "cpu")
    out = tw.warp_affine(frame, np.stack([ROTATED, SHEARED]), (256, 200), mode, border)
    assert out.shape == (2, 3, 200, 256)
    for got, m in zip(out, (ROTATED, SHEARED), strict=True):
        ref = cv2.warpAffine(astronaut.astype(np.float32), m, (256, 200), flags=MODES[mode],
                             borderMode=BORDERS[border])
        assert np.abs(got.permute(1, 2, 0).numpy() - ref).max() < 0.02  # levels of 255


@pytest.mark.parametrize("scale", [1.2, 0.7, 0.45, 0.3, 0.12])
def test_crops_are_the_cpu_crops(obama, scale: float) -> None:
    """Lanczos-4, the area pre-shrink of small faces, rounding: at most a rounding step apart."""
    c, s = scale * np.cos(0.2), scale * np.sin(0.2)
    affines = np.array([[[c, -s, -300 * scale], [s, c, -100 * scale]], [[c, s, -200 * scale], [-s, c, 0.0]]])
    crops = tw.crop_faces(tw.frame_to_tensor(obama, "cpu"), affines, 128)
    for got, m in zip(crops, affines, strict=True):
        diff = np.abs(got.permute(1, 2, 0).numpy() - warp_crop(obama, m, 128).astype(np.float32))
        assert diff.max() <= 1.0 and (diff > 0).mean() < 0.005


@pytest.mark.parametrize("scale", [0.3, 0.12])
def test_small_faces_are_area_averaged_not_aliased(astronaut, scale: float) -> None:
    """A crop shrinking the frame 3-8x: closer to the area average than a plain bicubic warp."""
    # Pixel centres of the crop on the area-average grid of frame[10:510, 5:505].
    m = np.array([[scale, 0.0, -4.5 * scale - 0.5], [0.0, scale, -9.5 * scale - 0.5]])
    size = int(500 * scale)
    got = tw.crop_faces(tw.frame_to_tensor(astronaut, "cpu"), m[None], size)[0].permute(1, 2, 0).numpy()
    truth = cv2.resize(astronaut[10:510, 5:505], (size, size), interpolation=cv2.INTER_AREA)
    truth = truth.astype(np.float32)
    plain = cv2.warpAffine(astronaut, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    err, plain_err = np.abs(got - truth).mean(), np.abs(plain.astype(np.float32) - truth).mean()
    assert err < 0.6 * plain_err


def test_box_mask_is_the_cpu_mask() -> None:
    np.testing.assert_array_equal(tw.box_mask(128).numpy(), box_mask(128))


def test_frame_round_trip_is_exact(obama) -> None:
    np.testing.assert_array_equal(tw.tensor_to_frame(tw.frame_to_tensor(obama, "cpu")), obama)


def test_paste_back_matches_the_cpu_paste_within_one_level(obama) -> None:
    """Two overlapping faces, one reaching out of the frame; same pixels touched, at most 1 level apart."""
    rng = np.random.default_rng(0)
    crops = np.stack([cv2.GaussianBlur((rng.random((128, 128, 3)) * 255).astype(np.float32), (0, 0), 2)
                      for _ in range(3)])
    affines = np.stack([
        [[0.5, 0.05, -180.0], [-0.05, 0.5, -60.0]],
        [[0.6, 0.0, -280.0], [0.0, 0.6, -90.0]],
        [[0.7, 0.0, 30.0], [0.0, 0.7, 20.0]],  # top-left corner: partly outside the frame
    ])
    mask = box_mask(128)
    ref = obama
    for crop, a in zip(crops, affines, strict=True):
        ref = paste_back(ref, crop, mask, a)
    frame = tw.frame_to_tensor(obama, "cpu")
    got = tw.tensor_to_frame(tw.paste_back(frame, torch.from_numpy(crops).permute(0, 3, 1, 2),
                                           torch.from_numpy(mask), affines))
    assert np.abs(got.astype(int) - ref.astype(int)).max() <= 1
    np.testing.assert_array_equal((got != obama).any(-1), (ref != obama).any(-1))
    assert (ref != obama).any(-1).sum() > 20000


def test_paste_back_skips_faces_off_the_frame(obama) -> None:
    frame = tw.frame_to_tensor(obama, "cpu")
    away = np.array([[1.0, 0.0, 5000.0], [0.0, 1.0, 5000.0]])
    out = tw.paste_back(frame, torch.zeros(1, 3, 64, 64), tw.box_mask(64), away[None])
    assert torch.equal(out, frame)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_crops_and_paste_match_cpu(obama) -> None:
    affines = np.stack([ROTATED, SHEARED])
    cpu = tw.crop_faces(tw.frame_to_tensor(obama, "cpu"), affines, 128)
    cuda = tw.crop_faces(tw.frame_to_tensor(obama, "cuda"), affines, 128)
    assert (cuda.cpu() - cpu).abs().max() < 0.05
    pasted = tw.paste_back(tw.frame_to_tensor(obama, "cuda"), cuda, tw.box_mask(128, device="cuda"), affines)
    ref = tw.paste_back(tw.frame_to_tensor(obama, "cpu"), cpu, tw.box_mask(128), affines)
    assert np.abs(tw.tensor_to_frame(pasted).astype(int) - tw.tensor_to_frame(ref).astype(int)).max() <= 1
