"""Neural swap and enhance of a whole frame on the device: one upload, crops, models, paste-back, one
download.

:class:`DeviceSwapper` wraps a :class:`~masquerade._stages.swap_neural.NeuralSwapper` whose session is
a :class:`~masquerade._backends.torch_session.TorchSession`, and keeps its options, source latent,
pixel boost and masks; only where the pixels live changes. Per frame the uint8 frame goes up once,
all faces are cropped by one ``grid_sample``, the model runs on the crops as one batch, the outputs
are pasted back on the device and the uint8 result comes down once.

Crops and paste-back reproduce the CPU stage's (Lanczos-4, area pre-shrink, rounding), so the
result matches it to a level or so (see tests/backends/test_torch_swap.py).

Chaining on the device (swap, then enhance, one transfer each way)::

    frame = torch_warp.frame_to_tensor(image, swapper.device)
    frame = enhancer.enhance_frame(swapper.swap_frame(frame, faces, source), faces)
    image = torch_warp.tensor_to_frame(frame)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from masquerade._backends import torch_warp as tw
from masquerade._backends.torch_session import TorchSession
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
    """``swap_many`` / ``swap`` of a NeuralSwapper, computed on its TorchSession's device.

    With an ``enhancer`` (a :class:`DeviceEnhancer` on the same device) every swapped face is also
    enhanced there before the frame comes back, so the frame crosses the bus once each way.
    """

    def __init__(self, swapper: Any, enhancer: DeviceEnhancer | None = None) -> None:
        session = swapper.session
        if not isinstance(session, TorchSession):
            raise UsageError("DeviceSwapper needs a swapper whose session is a TorchSession (torch-cuda)")
        self.swapper, self.session, self.enhancer = swapper, session, enhancer
        self.device = session.device
        if enhancer is not None and enhancer.device != self.device:
            raise UsageError(f"the enhancer runs on {enhancer.device}, the swapper on {self.device}")
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
        (raw,) = self.session.run_torch({"target": blob, "source": source}, [sw.output_name])
        lo, span = sw.output_range
        unit = ((raw.float() - lo) / span).clamp(0.0, 1.0)
        return explode(unit.flip(1) * 255.0, sw.factor)

    def swap_frame(self, frame: Tensor, faces: Sequence[Face], source: Any) -> Tensor:
        """(1, 3, H, W) float frame on the device -> the same with every face swapped (stays there)."""
        return self.swap_frames([frame], [faces], source)[0]

    def swap_frames(
        self, frames: Sequence[Tensor], faces: Sequence[Sequence[Face]], source: Any
    ) -> list[Tensor]:
        """Device frames with every face in ``faces[i]`` swapped; all frames' crops run as one batch."""
        sw = self.swapper
        template = sw.spec.template or ()
        affines = [np.stack([crop_affine(f.kps5, template, sw.size, sw.crop_size) for f in fs])
                   if fs else None for fs in faces]
        crops = [tw.crop_faces(frame, a, sw.crop_size) for frame, a in zip(frames, affines, strict=True)
                 if a is not None]
        if not crops:
            return list(frames)
        swapped = self.swap_crops(torch.cat(crops), source.latent)
        results, start = [], 0
        for frame, fs, a in zip(frames, faces, affines, strict=True):
            if a is None:
                results.append(frame)
                continue
            masks = np.stack([sw.mask(f, m) for f, m in zip(fs, a, strict=True)])
            masks = torch.as_tensor(masks, device=self.device)
            results.append(tw.paste_back(frame, swapped[start : start + len(fs)], masks, a))
            start += len(fs)
        return results

    def swap_batch(
        self, images: Sequence[Image], faces: Sequence[Sequence[Face]], source: Any
    ) -> list[Image]:
        """Host frames in, host frames out: each frame crosses the bus once each way, and the faces of
        all the frames run through the model as one batch."""
        todo = [i for i, fs in enumerate(faces) if fs]
        chosen = [faces[i] for i in todo]
        frames = self.swap_frames([tw.frame_to_tensor(images[i], self.device) for i in todo], chosen, source)
        if self.enhancer is not None:
            frames = [self.enhancer.enhance_frame(f, fs) for f, fs in zip(frames, chosen, strict=True)]
        swapped = dict(zip(todo, frames, strict=True))
        # New arrays throughout, as the CPU stage returns; frames without faces are the only copies.
        return [tw.tensor_to_frame(swapped[i]) if i in swapped else image.copy()
                for i, image in enumerate(images)]

    def swap_many(self, image: Image, faces: Sequence[Face], source: Any) -> Image:
        """``image`` with every face swapped: the frame crosses the bus once each way."""
        return self.swap_batch([image], [faces], source)[0]

    def swap(self, image: Image, face: Face, source: Any) -> Image:
        return self.swap_many(image, [face], source)


class DeviceEnhancer:
    """``enhance_many`` of a FaceEnhancer (GFPGAN, CodeFormer) computed on its TorchSession's device.

    Restoration graphs fix their batch (StyleGAN's modulated convolutions), so crops run one by one,
    as in the CPU stage, but without leaving the device.
    """

    def __init__(self, enhancer: Any) -> None:
        if not isinstance(enhancer.session, TorchSession):
            raise UsageError("DeviceEnhancer needs an enhancer whose session is a TorchSession (torch-cuda)")
        self.enhancer, self.session = enhancer, enhancer.session
        self.device = self.session.device
        spec = enhancer.spec
        self._mean = torch.tensor(np.broadcast_to(np.asarray(spec.mean, np.float32), (3,)).copy(),
                                  device=self.device).reshape(1, 3, 1, 1)
        self._std = torch.tensor(np.broadcast_to(np.asarray(spec.std, np.float32), (3,)).copy(),
                                 device=self.device).reshape(1, 3, 1, 1)
        self._mask = torch.as_tensor(enhancer._mask, device=self.device)

    def enhance_crops(self, crops: Tensor) -> Tensor:
        """(N, 3, 512, 512) BGR 0..255 crops on the device -> enhanced crops, same layout."""
        en = self.enhancer
        blob = (crops.flip(1) - self._mean) / self._std
        outs = []
        for one in blob:
            feeds = {en._input: one[None]}
            if en._weight is not None:
                feeds[en._weight] = torch.tensor([en.fidelity], dtype=torch.float64, device=self.device)
            outs.append(self.session.run_torch(feeds)[0].float())
        lo, span = en.output_range
        unit = ((torch.cat(outs) - lo) / span).clamp(0.0, 1.0)
        return unit.flip(1) * 255.0

    def enhance_frame(self, frame: Tensor, faces: Sequence[Face]) -> Tensor:
        """(1, 3, H, W) float frame on the device -> the same with every face enhanced (stays there)."""
        en = self.enhancer
        if not faces or en.blend == 0.0:
            return frame
        affines = np.stack([crop_affine(f.kps5, en.spec.template or (), en.size) for f in faces])
        enhanced = self.enhance_crops(tw.crop_faces(frame, affines, en.size))
        return tw.paste_back(frame, enhanced, self._mask, affines)

    def enhance_many(self, image: Image, faces: Sequence[Face]) -> Image:
        if not faces or self.enhancer.blend == 0.0:
            return image.copy()
        return tw.tensor_to_frame(self.enhance_frame(tw.frame_to_tensor(image, self.device), faces))

    def enhance(self, image: Image, face: Face) -> Image:
        return self.enhance_many(image, [face])
