"""The neural swap of a whole frame on the device: one upload, crops, model, paste-back, one download.

:class:`DeviceSwapper` wraps a :class:`~masquerade.stages.swap_neural.NeuralSwapper` whose session is
a :class:`~masquerade.backends.torch_session.TorchSession`, and keeps its options, source latent,
pixel boost and masks; only where the pixels live changes. Per frame the uint8 frame goes up once,
all faces are cropped by one ``grid_sample``, the model runs on the crops as one batch, the outputs
are pasted back on the device and the uint8 result comes down once.

Differences from the CPU stage: crops and paste-back interpolate bicubically (OpenCV's Lanczos-4 has
no ``grid_sample`` counterpart) and small faces are area-averaged by an integer factor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from masquerade.backends import torch_warp as tw
from masquerade.backends.torch_session import TorchSession
from masquerade.errors import UsageError
from masquerade.geometry.align import crop_affine
from masquerade.types import Face, Image

Tensor = torch.Tensor


def implode(crops: Tensor, factor: int) -> Tensor:
    """(N, C, S, S) -> (N f^2, C, S/f, S/f); tile (i, j) = crop[..., i::f, j::f] (as the CPU stage)."""
    if factor == 1:
        return crops
    n, c, s, _ = crops.shape
    t = s // factor
    return crops.reshape(n, c, t, factor, t, factor).permute(0, 3, 5, 1, 2, 4).reshape(n * factor**2, c, t, t)


def explode(tiles: Tensor, factor: int) -> Tensor:
    """Inverse of :func:`implode`."""
    if factor == 1:
        return tiles
    nf, c, t, _ = tiles.shape
    n = nf // factor**2
    grid = tiles.reshape(n, factor, factor, c, t, t).permute(0, 3, 4, 1, 5, 2)
    return grid.reshape(n, c, t * factor, t * factor)


class DeviceSwapper:
    """``swap_many`` / ``swap`` of a NeuralSwapper, computed on its TorchSession's device."""

    def __init__(self, swapper: Any) -> None:
        session = swapper.session
        if not isinstance(session, TorchSession):
            raise UsageError("DeviceSwapper needs a swapper whose session is a TorchSession (torch-cuda)")
        self.swapper, self.session = swapper, session
        self.device = session.device
        spec = swapper.spec
        self._mean = torch.tensor(np.broadcast_to(np.asarray(spec.mean, np.float32), (3,)).copy(),
                                  device=self.device).reshape(1, 3, 1, 1)
        self._std = torch.tensor(np.broadcast_to(np.asarray(spec.std, np.float32), (3,)).copy(),
                                 device=self.device).reshape(1, 3, 1, 1)

    def prepare(self, sources: Sequence[tuple[Image, Face]]) -> Any:
        return self.swapper.prepare(sources)

    def swap_crops(self, crops: Tensor, latent: np.ndarray) -> Tensor:
        """(N, 3, S, S) BGR 0..255 crops on the device -> swapped crops, same layout, float 0..255."""
        sw = self.swapper
        tiles = implode(crops, sw.factor)
        blob = (tiles.flip(1) - self._mean) / self._std  # BGR -> RGB, normalised as the model expects
        source = torch.as_tensor(latent, device=self.device).reshape(1, -1).expand(len(blob), -1)
        (raw,) = self.session.run_torch({"target": blob, "source": source}, [sw._output])
        unit = ((raw.float() - sw._out_lo) / sw._out_span).clamp(0.0, 1.0)
        return explode(unit.flip(1) * 255.0, sw.factor)

    def swap_many(self, image: Image, faces: Sequence[Face], source: Any) -> Image:
        """``image`` with every face swapped: the frame crosses the bus once each way."""
        if not faces:
            return image.copy()
        sw = self.swapper
        template = sw.spec.template or ()
        affines = np.stack([crop_affine(f.kps5, template, sw.size, sw.crop_size) for f in faces])
        frame = tw.frame_to_tensor(image, self.device)
        crops = tw.crop_faces(frame, affines, sw.crop_size)
        swapped = self.swap_crops(crops, source.latent)
        masks = torch.as_tensor(np.stack([sw.mask(f, a) for f, a in zip(faces, affines, strict=True)]),
                                device=self.device)
        return tw.tensor_to_frame(tw.paste_back(frame, swapped, masks, affines))

    def swap(self, image: Image, face: Face, source: Any) -> Image:
        return self.swap_many(image, [face], source)
