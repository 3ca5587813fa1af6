"""Face enhancers (GFPGAN 1.4, CodeFormer) through ONNX Runtime.

Per face: align onto the FFHQ 512 px template, RGB ``(x - 127.5) / 127.5``, run, map the [-1, 1]
output back to 0..255, and paste it back on the crop's footprint under the box mask scaled by
``blend`` (0 keeps the frame, 1 takes the enhanced face fully inside the mask). CodeFormer also takes
``weight``, its fidelity w as float64 (0: strongest restoration, 1: closest to the input).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from masquerade._stages.paste import box_mask, output_to_crop, paste_into
from masquerade.errors import ModelError, UsageError
from masquerade.geometry.align import crop_faces
from masquerade.models.manifest import ModelSpec
from masquerade.types import Face, Image

DEFAULT_FIDELITY = 0.5
"""CodeFormer's w when none is given (its authors' middle setting)."""


class FaceEnhancer:
    """Restores faces with a 512 px face-restoration model and blends the result in."""

    def __init__(
        self, session: Any, spec: ModelSpec, blend: float, fidelity: float = DEFAULT_FIDELITY
    ) -> None:
        if spec.kind != "enhancer" or spec.size_px is None or spec.template is None:
            raise ModelError(f"{spec.name} is not an enhancer with an alignment template")
        if not 0.0 <= blend <= 1.0:
            raise UsageError(f"--enhancer-blend must be between 0 and 1, got {blend}")
        if not 0.0 <= fidelity <= 1.0:
            raise UsageError(f"CodeFormer fidelity must be between 0 and 1, got {fidelity}")
        self.session, self.spec, self.blend, self.fidelity = session, spec, float(blend), float(fidelity)
        self.size = int(spec.size_px)
        inputs = [i.name for i in session.get_inputs()]
        self._input = "input" if "input" in inputs else inputs[0]
        self._weight = "weight" if "weight" in inputs else None
        self.output_name: str = session.get_outputs()[0].name
        lo, hi = spec.output_range or (-1.0, 1.0)
        self._out_lo, self._out_span = float(lo), float(hi - lo)
        self._mask = box_mask(self.size) * np.float32(self.blend)

    def crops(self, image: Image, faces: Sequence[Face]) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
        """(N, 512, 512, 3) aligned crops and their frame-to-crop matrices."""
        return crop_faces(image, [f.kps5 for f in faces], self.spec.template or (), self.size)

    def feeds(self, crops: NDArray[np.uint8]) -> list[dict[str, NDArray]]:
        """The graph's inputs for each crop (it runs one crop at a time)."""
        rgb = crops[..., ::-1].astype(np.float32)
        blob = np.ascontiguousarray(((rgb - self.spec.mean) / self.spec.std).transpose(0, 3, 1, 2))
        feeds: list[dict[str, NDArray]] = [{self._input: one[None]} for one in blob]
        if self._weight is not None:
            for feed in feeds:
                feed[self._weight] = np.array([self.fidelity], dtype=np.float64)
        return feeds

    def postprocess(self, raw: NDArray[np.floating]) -> NDArray[np.float32]:
        """(N, 512, 512, 3) BGR float 0..255 from raw (N, 3, 512, 512) outputs."""
        return output_to_crop(raw, self._out_lo, self._out_span)

    @property
    def output_range(self) -> tuple[float, float]:
        """(lo, span) of the model's output picture."""
        return self._out_lo, self._out_span

    def enhance_crops(self, crops: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Enhanced crops (N, 512, 512, 3) float BGR 0..255."""
        outs = [self.session.run([self.output_name], feed)[0][0] for feed in self.feeds(crops)]
        return self.postprocess(np.stack(outs))

    def enhance_many(self, image: Image, faces: Sequence[Face]) -> Image:
        if not faces or self.blend == 0.0:
            return image.copy()
        crops, affines = self.crops(image, faces)
        out = image.copy()
        for crop, affine in zip(self.enhance_crops(crops), affines, strict=True):
            paste_into(out, crop, self._mask, affine)
        return out

    def enhance(self, image: Image, face: Face) -> Image:
        return self.enhance_many(image, [face])
