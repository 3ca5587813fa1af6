"""Neural face swappers (inswapper_128 / _fp16, hyperswap_1a/1b/1c_256) through ONNX Runtime.

Per face: similarity-align the target's key points onto the model's template (at the model size, or
at ``--pixel-boost`` size), split a boosted crop into model-size tiles by pixel shuffling, run the
tiles as one batch (or one by one when the graph pins batch 1), reassemble, and paste the float
output back on the crop's footprint only (:mod:`masquerade._stages.paste`).

The source is an ArcFace (w600k_r50) embedding, whatever recognizer selects faces: several source
photos average their normalised embeddings. inswapper then takes
``normalize(normalize(e) @ emap)`` with ``emap`` the graph's last initializer; hyperswap takes the
normalised embedding itself (``ModelSpec.embedding_transform``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from masquerade._stages.paste import box_mask, mesh_mask, output_to_crop, paste_into
from masquerade._stages.recognize_arcface import ArcFaceRecognizer, normalize
from masquerade.config import SwapOptions
from masquerade.errors import ModelError, NoSourceFaceError, UsageError
from masquerade.geometry.align import affine_scale, crop_affine, crop_faces
from masquerade.models.manifest import ModelSpec
from masquerade.types import Face, Image


@dataclass(frozen=True, eq=False)
class SourceEmbedding:
    """What a neural swapper needs of the source person, computed once per run."""

    embedding: NDArray[np.float32]
    """(512,) mean of the sources' normalised ArcFace embeddings, normalised again."""
    latent: NDArray[np.float32]
    """(1, 512) the model's ``source`` input."""
    count: int
    """How many source faces were averaged."""


def load_emap(model: Path | bytes) -> NDArray[np.float32]:
    """inswapper's 512x512 embedding map: the last initializer of the graph (the model's verified bytes,
    or a path)."""
    import onnx
    from onnx import numpy_helper

    label = "the swapper model" if isinstance(model, bytes) else Path(model).name
    try:
        if isinstance(model, bytes):
            graph = onnx.load_from_string(model).graph
        else:
            graph = onnx.load(str(model), load_external_data=False).graph
    except Exception as error:  # onnx raises DecodeError, OSError... for bad files
        raise ModelError(f"{label} is not a readable ONNX model ({type(error).__name__})") from None
    if not graph.initializer:
        raise ModelError(f"{label} has no initializers, so no emap")
    emap = numpy_helper.to_array(graph.initializer[-1]).astype(np.float32)
    if emap.shape != (512, 512):
        raise ModelError(f"{label}: last initializer is {emap.shape}, not the 512x512 emap")
    return emap


def source_latent(
    embedding: NDArray[np.floating], transform: str | None, emap: NDArray[np.float32] | None
) -> NDArray[np.float32]:
    """The swapper's (1, 512) ``source`` input from an ArcFace embedding."""
    e = normalize(np.asarray(embedding, np.float32).reshape(1, -1))
    if transform == "emap":
        if emap is None:
            raise ModelError("this swapper needs its emap (the graph's last initializer)")
        return normalize(e @ emap)
    if transform in ("l2", None):
        return e
    raise ModelError(f"unknown embedding transform {transform!r}")


def implode(crops: NDArray, factor: int) -> NDArray:
    """(N, S, S, C) crops -> (N * factor^2, S/factor, S/factor, C) tiles; tile (i, j) = crop[i::f, j::f].

    Each tile is the whole face at model size, shifted by a sub-pixel phase, so the model sees a normal
    input; :func:`explode` interleaves the outputs back into the full-resolution crop.
    """
    if factor == 1:
        return crops
    n, s, _, c = crops.shape
    t = s // factor
    return (
        crops.reshape(n, t, factor, t, factor, c).transpose(0, 2, 4, 1, 3, 5).reshape(n * factor**2, t, t, c)
    )


def explode(tiles: NDArray, factor: int) -> NDArray:
    """Inverse of :func:`implode`."""
    if factor == 1:
        return tiles
    nf, t, _, c = tiles.shape
    n = nf // factor**2
    return (
        tiles.reshape(n, factor, factor, t, t, c)
        .transpose(0, 3, 1, 4, 2, 5)
        .reshape(n, t * factor, t * factor, c)
    )


def boost_factor(model_size: int, pixel_boost: int | None) -> int:
    """How many tiles per side a ``pixel_boost`` crop makes for a ``model_size`` model (1: no boost)."""
    if pixel_boost is None or pixel_boost <= model_size:
        return 1
    if pixel_boost % model_size:
        raise UsageError(f"--pixel-boost {pixel_boost} must be a multiple of the model's {model_size} px")
    return pixel_boost // model_size


def auto_pixel_boost(kps5: NDArray[np.floating], spec: ModelSpec, limit: int = 512) -> int | None:
    """The smallest pixel boost (up to ``limit``) at which the crop is at least as fine as the face.

    A face larger than the model's crop loses detail on the way in and comes back blurred; boosting
    until the crop has one pixel per frame pixel removes that loss (see the paste-back benchmark).
    None when the model size already suffices.
    """
    size = int(spec.size_px or 0)
    scale = affine_scale(crop_affine(kps5, spec.template or (), size))  # crop px per frame px
    factor = min(int(np.ceil(1.0 / max(scale, 1e-6) - 1e-3)), max(limit // size, 1))
    return factor * size if factor > 1 else None


class NeuralSwapper:
    """Swaps one face at a time (``swap``) or all faces of a frame (``swap_many``) with an ONNX model."""

    def __init__(
        self,
        session: Any,
        spec: ModelSpec,
        options: SwapOptions,
        recognizer: ArcFaceRecognizer,
        emap: NDArray[np.float32] | None = None,
    ) -> None:
        if spec.kind != "swapper" or spec.size_px is None or spec.template is None:
            raise ModelError(f"{spec.name} is not a swapper with an alignment template")
        if spec.embedding_from and recognizer.spec.name != spec.embedding_from:
            raise ModelError(
                f"{spec.name} needs embeddings from {spec.embedding_from}, not {recognizer.spec.name}"
            )
        self.session, self.spec, self.options, self.recognizer = session, spec, options, recognizer
        self.size = int(spec.size_px)
        self.factor = boost_factor(self.size, options.pixel_boost)
        self.crop_size = self.size * self.factor
        if spec.embedding_transform == "emap" and emap is None:
            # A session made from a file knows its path; read the emap from there if not given.
            path = getattr(session, "_model_path", None)
            emap = load_emap(Path(path)) if path else None
        self.emap = emap
        inputs = {i.name: i for i in session.get_inputs()}
        if "target" not in inputs or "source" not in inputs:
            raise ModelError(f"{spec.name}: graph inputs {sorted(inputs)} lack 'target' and 'source'")
        self._dtype = np.float16 if "float16" in inputs["target"].type else np.float32
        batch = inputs["target"].shape[0]
        self._batch = batch if isinstance(batch, int) and batch > 0 else None
        lo, hi = spec.output_range or (0.0, 1.0)
        self._out_lo, self._out_span = float(lo), float(hi - lo)
        names = [o.name for o in session.get_outputs()]
        # hyperswap also outputs a soft mask; the face image is the output named "output".
        self.output_name = "output" if "output" in names else names[0]

    # -- source -------------------------------------------------------------------------------
    def prepare(self, sources: Sequence[tuple[Image, Face]]) -> SourceEmbedding:
        """Average the normalised ArcFace embeddings of the source faces; make the model's latent."""
        if not sources:
            raise NoSourceFaceError("no source face to take the identity from")
        embeddings = np.stack([self.recognizer.embed(image, face) for image, face in sources])
        mean = normalize(embeddings.mean(axis=0))
        latent = source_latent(mean, self.spec.embedding_transform, self.emap)
        return SourceEmbedding(embedding=mean, latent=latent, count=len(sources))

    # -- separable core (N crops in, N out) ----------------------------------------------------
    def crops(self, image: Image, faces: Sequence[Face]) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
        """(N, S, S, 3) aligned crops at the pixel-boost size and their frame-to-crop matrices."""
        return crop_faces(image, [f.kps5 for f in faces], self.spec.template or (), self.size, self.crop_size)

    def preprocess(self, tiles: NDArray[np.uint8]) -> NDArray:
        """(N, 3, s, s) RGB blob normalised as the model expects."""
        rgb = tiles[..., ::-1].astype(np.float32)
        blob = ((rgb - self.spec.mean) / self.spec.std).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(blob, dtype=self._dtype)

    def model_feeds(self, blob: NDArray, latent: NDArray[np.float32]) -> dict[str, NDArray]:
        """The graph's inputs for N preprocessed tiles sharing one source latent."""
        source = np.repeat(latent.reshape(1, -1), len(blob), axis=0)
        return {"target": blob, "source": np.ascontiguousarray(source, dtype=self._dtype)}

    def infer(self, blob: NDArray, latent: NDArray[np.float32]) -> NDArray[np.float32]:
        """Raw model outputs (N, 3, s, s) for N tiles sharing one source latent."""
        feeds = self.model_feeds(blob, latent)
        step = self._batch or len(blob)
        parts = [
            self.session.run([self.output_name], {name: v[i : i + step] for name, v in feeds.items()})[0]
            for i in range(0, len(blob), step)
        ]
        return np.concatenate(parts).astype(np.float32)

    def postprocess(self, raw: NDArray[np.float32]) -> NDArray[np.float32]:
        """(N, s, s, 3) BGR float 0..255 (kept as float so the paste adds no extra rounding)."""
        return output_to_crop(raw, self._out_lo, self._out_span)

    @property
    def output_range(self) -> tuple[float, float]:
        """(lo, span) of the model's output picture."""
        return self._out_lo, self._out_span

    def swap_crops(self, crops: NDArray[np.uint8], latent: NDArray[np.float32]) -> NDArray[np.float32]:
        """Swapped crops (N, S, S, 3) float BGR from aligned crops (N, S, S, 3), pixel boost included."""
        tiles = implode(crops, self.factor)
        out = self.postprocess(self.infer(self.preprocess(tiles), latent))
        return explode(out, self.factor)

    def mask(self, face: Face, affine: NDArray[np.float64]) -> NDArray[np.float32]:
        """Paste-back mask in crop space: the box by default, the mesh outline when asked and available."""
        if self.options.mask == "mesh" and face.landmarks is not None:
            return mesh_mask(face.landmarks, affine, self.crop_size)
        return box_mask(self.crop_size)

    # -- whole-frame calls ---------------------------------------------------------------------
    def swap_batch(
        self, images: Sequence[Image], faces: Sequence[Sequence[Face]], source: SourceEmbedding
    ) -> list[Image]:
        """``images[i]`` with every face in ``faces[i]`` swapped; the crops of all frames run together
        (in steps of the graph's batch size when it pins one)."""
        cropped = [self.crops(image, fs) if fs else None for image, fs in zip(images, faces, strict=True)]
        parts = [c[0] for c in cropped if c is not None]
        if not parts:
            return [image.copy() for image in images]
        swapped = iter(self.swap_crops(np.concatenate(parts), source.latent))
        results = []
        for image, fs, crop_info in zip(images, faces, cropped, strict=True):
            out = image.copy()  # one copy per frame; faces are pasted into it in place
            for face, affine in zip(fs, crop_info[1] if crop_info is not None else (), strict=True):
                paste_into(out, next(swapped), self.mask(face, affine), affine)
            results.append(out)
        return results

    def swap_many(self, image: Image, faces: Sequence[Face], source: SourceEmbedding) -> Image:
        """``image`` with every face in ``faces`` swapped (their tiles run as one batch)."""
        return self.swap_batch([image], [faces], source)[0]

    def swap(self, image: Image, face: Face, source: SourceEmbedding) -> Image:
        return self.swap_many(image, [face], source)
