"""The model registry: one frozen declaration per downloadable model, built without any network.

Every fact a stage needs to run a model (file, pinned SHA-256 values, input contract, crop size,
alignment template, normalisation, licence) lives here, next to the others, so a stage never
hard-codes them and ``masquerade models`` can list, fetch and check files from the same table.

Conventions:
- ``template`` is the 5-point alignment template in the model's own input pixels (``size_px``),
  in the key-point order of :mod:`masquerade.types` (left eye, right eye, nose, left/right mouth).
- ``mean`` / ``std`` normalise an RGB uint8 crop: ``(x - mean) / std`` with x in 0..255.
- ``output_range`` is the value range of the image output (``None`` when it is not an image).
- In a contract, a dimension of ``None`` means "any size" (dynamic or not checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from masquerade.errors import UsageError

ModelKind = Literal["swapper", "detector", "recognizer", "enhancer"]
Template5 = tuple[tuple[float, float], tuple[float, float], tuple[float, float], tuple[float, float],
                  tuple[float, float]]


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an ONNX graph. ``name=None`` means the name is not pinned."""

    name: str | None
    shape: tuple[int | None, ...] | None
    """Dimensions; ``None`` entries are free. ``None`` as a whole: rank not checked."""
    dtype: str = "float32"
    """numpy dtype name of the tensor element type."""


@dataclass(frozen=True)
class InputContract:
    """What a graph must take and give for the stage code to be correct."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @property
    def input_names(self) -> tuple[str | None, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str | None, ...]:
        return tuple(t.name for t in self.outputs)


@dataclass(frozen=True)
class ArchiveSource:
    """A zip that holds the model as one member (InsightFace ships det_10g and w600k_r50 in buffalo_l)."""

    urls: tuple[str, ...]
    sha256: tuple[str, ...]
    member: str
    """Path of the model inside the zip."""
    size: int | None = None


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: ModelKind
    file_name: str
    urls: tuple[str, ...]
    """Direct download mirrors, tried in order; every one must serve a file whose hash is accepted."""
    sha256: tuple[str, ...]
    """Accepted SHA-256 values (lower-case hex). Empty: no pinned hash, import with a flag only."""
    size: int | None
    """Size in bytes of the file with the first hash, when known."""
    licence: str
    commercial_use: bool
    contract: InputContract
    size_px: int | None = None
    """Side of the square input crop; None for the detector (any size, letterboxed)."""
    template: Template5 | None = None
    mean: float = 0.0
    std: float = 255.0
    output_range: tuple[float, float] | None = None
    embedding_from: str | None = None
    """Name of the recognizer whose embedding this swapper was trained with."""
    embedding_transform: Literal["emap", "l2"] | None = None
    """How the swapper's ``source`` is made from that embedding: ``emap`` (inswapper: normalise,
    multiply by the graph's last initializer, normalise again) or ``l2`` (normalised embedding)."""
    licence_url: str | None = None
    archive: ArchiveSource | None = None
    notes: str = ""

    @property
    def pinned(self) -> bool:
        """True when the registry pins at least one hash (downloads can be verified)."""
        return bool(self.sha256)


def _scaled(points: tuple[tuple[float, float], ...], factor: float) -> Template5:
    pts = tuple((round(x * factor, 4), round(y * factor, 4)) for x, y in points)
    return pts  # type: ignore[return-value]


# ArcFace's 112 px template (insightface `face_align.arcface_dst`).
ARCFACE_112: Template5 = (
    (38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (41.5493, 92.3655), (70.7299, 92.2041),
)
# inswapper's 128 px crop: insightface's `estimate_norm(kps, 128)` keeps the 112 template's scale and
# shifts it by +8 px in x (the crop is widened, not zoomed). hyperswap uses this template at 2x.
ARCFACE_128: Template5 = (
    (46.2946, 51.6963), (81.5318, 51.5014), (64.0252, 71.7366), (49.5493, 92.3655), (78.7299, 92.2041),
)
# GFPGAN / CodeFormer FFHQ 512 px template (basicsr `FaceRestoreHelper.face_template`).
FFHQ_512: Template5 = (
    (192.98138, 239.94708), (318.90277, 240.1936), (256.63416, 314.01935),
    (201.26117, 371.41043), (313.08905, 371.15118),
)

_INSIGHTFACE_LICENCE = "InsightFace model licence: non-commercial research use only"
_INSIGHTFACE_LICENCE_URL = "https://github.com/deepinsight/insightface#license"


def _ff(release: str, file_name: str) -> tuple[str, ...]:
    """FaceFusion's mirrors of a file: its GitHub release and the same release on Hugging Face."""
    return (f"https://github.com/facefusion/facefusion-assets/releases/download/{release}/{file_name}",
            f"https://huggingface.co/facefusion/{release}/resolve/main/{file_name}")


_HF_BUFFALO_L = "https://huggingface.co/public-data/insightface/resolve/main/models/buffalo_l"
_BUFFALO_L_URLS = ("https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip",)
_BUFFALO_L_SHA256 = ("80ffe37d8a5940d59a7384c201a2a38d4741f2f3c51eef46ebb28218a7b0ca2f",)
_BUFFALO_L_SIZE = 288_621_354


def _image_io(size: int, in_name: str | None = "input", out_name: str | None = None) -> InputContract:
    return InputContract(
        inputs=(TensorSpec(in_name, (1, 3, size, size)),),
        outputs=(TensorSpec(out_name, (1, 3, size, size)),),
    )


def _swapper_contract(size: int) -> InputContract:
    return InputContract(
        inputs=(TensorSpec("target", (1, 3, size, size)), TensorSpec("source", (1, 512))),
        outputs=(TensorSpec("output", (1, 3, size, size)),),
    )


def _inswapper(name: str, urls: tuple[str, ...], sha256: tuple[str, ...], size: int, notes: str) -> ModelSpec:
    """inswapper_128 and its fp16 copy share everything but the file."""
    return ModelSpec(
        name=name,
        kind="swapper",
        file_name=f"{name}.onnx",
        urls=urls,
        sha256=sha256,
        size=size,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        licence_url=_INSIGHTFACE_LICENCE_URL,
        contract=_swapper_contract(128),
        size_px=128,
        template=ARCFACE_128,
        mean=0.0,
        std=255.0,
        output_range=(0.0, 1.0),
        embedding_from="w600k_r50",
        embedding_transform="emap",
        notes=notes,
    )


def _hyperswap(variant: str, sha256: tuple[str, ...], size: int | None) -> ModelSpec:
    file_name = f"hyperswap_1{variant}_256.onnx"
    return ModelSpec(
        name=f"hyperswap_1{variant}_256",
        kind="swapper",
        file_name=file_name,
        urls=_ff("models-3.3.0", file_name),
        sha256=sha256,
        size=size,
        licence="ResearchRAIL-MS: non-commercial research use only",
        commercial_use=False,
        licence_url="https://github.com/facefusion/facefusion-labs",
        contract=InputContract(
            inputs=(TensorSpec("source", (1, 512)), TensorSpec("target", (1, 3, 256, 256))),
            outputs=(TensorSpec("output", (1, 3, 256, 256)), TensorSpec("mask", None)),
        ),
        size_px=256,
        template=_scaled(ARCFACE_128, 2.0),
        mean=127.5,
        std=127.5,
        output_range=(-1.0, 1.0),
        embedding_from="w600k_r50",
        embedding_transform="l2",
        notes="Outputs a face and a soft mask (same crop) usable for paste-back.",
    )


_SPECS: tuple[ModelSpec, ...] = (
    _inswapper(
        "inswapper_128",
        urls=(
            "https://github.com/deepinsight/insightface/releases/download/v0.7/inswapper_128.onnx",
            "https://huggingface.co/ezioruan/inswapper_128.onnx/resolve/main/inswapper_128.onnx",
            *_ff("models-3.0.0", "inswapper_128.onnx"),  # serves the re-saved copy (a290...)
        ),
        sha256=(
            "e4a3f08c753cb72d04e10aa0f7dbe3deebbf39567d4ead6dce08e98aa49e16af",
            "a290273ed497312095dac48cdef20feec9d5208298223dd01288ab202b54bea7",  # re-saved copy
        ),
        size=554_253_681,
        notes="emap (512x512) is the graph's last initializer; "
        "source = normalize(normalize(arcface_embedding) @ emap).",
    ),
    _inswapper(
        "inswapper_128_fp16",
        urls=_ff("models-3.0.0", "inswapper_128_fp16.onnx"),
        sha256=("c4eccca86ad177586c85c28bf1a64a9d9ed237e283a15818d831f7facfd3f420",),
        size=277_680_829,
        notes="Same contract as inswapper_128 with float16 weights and float32 inputs/outputs.",
    ),
    _hyperswap("a", ("c0e98a8a03a238f461ed3d2570e426b49f46745ee400854a60dceeb70c246add",), 402_742_682),
    _hyperswap("b", ("5124031789c42f71b9558fb71954ef7aedb6da7ed9fac79293e23c61a792a73e",), None),
    _hyperswap("c", ("5528c2d76fe9986c99d829278987ef9f3a630cb606db7628d02b57b330f406a5",), None),
    ModelSpec(
        name="det_10g",
        kind="detector",
        file_name="det_10g.onnx",
        urls=(f"{_HF_BUFFALO_L}/det_10g.onnx",),
        sha256=("5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",),
        size=16_923_827,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        licence_url=_INSIGHTFACE_LICENCE_URL,
        contract=InputContract(
            inputs=(TensorSpec("input.1", (1, 3, None, None)),),
            # scores, boxes, key points for strides 8/16/32 (names are graph-internal numbers).
            outputs=tuple(TensorSpec(None, None) for _ in range(9)),
        ),
        size_px=640,
        mean=127.5,
        std=128.0,
        archive=ArchiveSource(_BUFFALO_L_URLS, _BUFFALO_L_SHA256, "det_10g.onnx", _BUFFALO_L_SIZE),
        notes="SCRFD-10G with key points: RGB, letterboxed top-left into 640x640; 2 anchors per cell; "
        "score threshold 0.5, NMS IoU 0.4.",
    ),
    ModelSpec(
        name="w600k_r50",
        kind="recognizer",
        file_name="w600k_r50.onnx",
        urls=(f"{_HF_BUFFALO_L}/w600k_r50.onnx", *_ff("models-3.0.0", "arcface_w600k_r50.onnx")),
        sha256=(
            "4c06341c33c2ca1f86781dab0e829f88ad5b64be9fba56e56bc9ebdefc619e43",
            "f1f79dc3b0b79a69f94799af1fffebff09fbd78fd96a275fd8f0cbbea23270d1",  # FaceFusion's re-save
        ),
        size=174_383_860,
        licence=_INSIGHTFACE_LICENCE,
        commercial_use=False,
        licence_url=_INSIGHTFACE_LICENCE_URL,
        contract=InputContract(
            inputs=(TensorSpec(None, (None, 3, 112, 112)),),
            outputs=(TensorSpec(None, (None, 512)),),
        ),
        size_px=112,
        template=ARCFACE_112,
        mean=127.5,
        std=127.5,
        archive=ArchiveSource(_BUFFALO_L_URLS, _BUFFALO_L_SHA256, "w600k_r50.onnx", _BUFFALO_L_SIZE),
        notes="ArcFace IResNet50 trained on WebFace600K; 512-d embedding (L2-normalise before use).",
    ),
    ModelSpec(
        name="gfpgan_1.4",
        kind="enhancer",
        file_name="gfpgan_1.4.onnx",
        urls=_ff("models-3.0.0", "gfpgan_1.4.onnx"),
        sha256=(
            "6548e54cbcf248af385248f0c1193b359c37a0f98b836282b09cf48af4fd2b73",
            "accc4757b26bdb89b32b4d3500d4f79c9dff97c1dd7c7104bf9dcb95e3311385",
        ),
        size=None,
        licence="Apache-2.0 (GFPGAN); StyleGAN2 parts under their own licences",
        commercial_use=True,
        licence_url="https://github.com/TencentARC/GFPGAN/blob/master/LICENSE",
        # Two exports circulate with different tensor names: only shapes are pinned.
        contract=_image_io(512, in_name=None),
        size_px=512,
        template=FFHQ_512,
        mean=127.5,
        std=127.5,
        output_range=(-1.0, 1.0),
    ),
    ModelSpec(
        name="codeformer",
        kind="enhancer",
        file_name="codeformer.onnx",
        urls=_ff("models-3.0.0", "codeformer.onnx"),
        sha256=(),
        size=None,
        licence="S-Lab License 1.0: non-commercial use only",
        commercial_use=False,
        licence_url="https://github.com/sczhou/CodeFormer/blob/master/LICENSE",
        contract=InputContract(
            inputs=(TensorSpec("input", (1, 3, 512, 512)), TensorSpec("weight", None, "float64")),
            outputs=(TensorSpec(None, (1, 3, 512, 512)),),
        ),
        size_px=512,
        template=FFHQ_512,
        mean=127.5,
        std=127.5,
        output_range=(-1.0, 1.0),
        notes="`weight` is the fidelity w in [0, 1] as float64 (FaceFusion passes an array of one value).",
    ),
)

MODELS: Mapping[str, ModelSpec] = MappingProxyType({s.name: s for s in _SPECS})
"""Every known model by name (read-only)."""


def get_spec(name: str) -> ModelSpec:
    """The declaration of model ``name``; a UsageError lists the known names otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise UsageError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None
