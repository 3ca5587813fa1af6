"""Frozen option objects. A run's options travel in one ``RunConfig``; nothing is global."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

FaceMode = Literal["reference", "all", "one", "index"]


@dataclass(frozen=True)
class DetectOptions:
    detector: str = "mesh"
    """``mesh`` (embedded MediaPipe, no download) or a neural detector from the model registry."""
    min_score: float = 0.5
    """Minimum detector confidence for a candidate box."""
    presence_threshold: float = 0.5
    """Minimum face-mesh face-presence score (probability) for a candidate to count as a face."""
    tiles: bool = True
    """Also run the short-range detector on overlapping tiles (finds small faces in group photos)."""


@dataclass(frozen=True)
class TrackOptions:
    redetect_interval: int = 12
    """Run full detection at least every N frames (and whenever a track is lost)."""
    search_interval: int = 3
    """While no face is followed (or a lost one is awaited), run full detection every N frames: a
    newcomer is found within N frames without paying a detection pass on every faceless frame."""
    max_missed: int = 2
    """Drop a track after it has been missed on this many detection passes."""
    smoothing_min_cutoff: float = 1.0
    """One-Euro filter: cut-off frequency (Hz) at rest; lower = smoother when still."""
    smoothing_beta: float = 80.0
    """One-Euro filter: Hz of cut-off per face-size/s of head speed; higher = less lag on fast motion
    (steady lag is about face size / (2 pi beta) px: ~0.4 px for a 200 px face)."""


@dataclass(frozen=True)
class MapEntry:
    """``--map REFERENCE=SOURCE[+SOURCE...]``: the faces of the person in ``reference`` get the face of
    ``sources`` (several photos of one person, used as several ``-s`` photos are)."""

    reference: Path
    sources: tuple[Path, ...]


@dataclass(frozen=True)
class SelectOptions:
    mode: FaceMode = "reference"
    face_index: int = 0
    """For ``mode="index"``: which face, counted from the left, 0-based. With ``reference_frame``:
    which face of that frame is the reference."""
    reference: Path | None = None
    """Image of the person whose faces are swapped; None = the largest face in the first frame with one."""
    reference_frame: int | None = None
    """Take the reference from this frame of the target (0-based, counted from the file's first frame,
    whatever the trim), its ``face_index``-th face from the left, instead of from an image."""
    similarity: float | None = None
    """Distance threshold for a reference match; None = the recognizer's measured default."""
    mapping: tuple[MapEntry, ...] = ()
    """Per-person sources: each entry's person gets its own source; the run's ``-s`` source (if any)
    goes on the faces ``mode`` selects among those no entry claims."""


NO_SWAP = "none"
"""``SwapOptions.swapper`` of an enhance-only run (``masquerade enhance``): no face is replaced."""


@dataclass(frozen=True)
class SwapOptions:
    swapper: str = "mesh"
    """``mesh``, a neural swapper from the model registry, or ``none`` (enhance only)."""
    keep_mouth: bool = True
    """Keep the target's mouth interior (teeth, tongue) so speech survives."""
    keep_eyes: bool = True
    """Keep the target's eyes when they are closed, so blinks survive."""
    color_transfer: bool = True
    mask: Literal["box", "mesh"] = "box"
    """Paste-back mask for neural swappers: eroded, feathered box, or the face-mesh outline."""
    pixel_boost: int | None = None
    """Neural swappers: run the crop at 256 or 512 px by pixel-shuffled tiles."""


@dataclass(frozen=True)
class EnhanceOptions:
    enhancer: str = "none"
    blend: float = 0.8
    """How much of the enhanced face to keep, 0..1."""
    fidelity: float = 0.5
    """CodeFormer only: 0 = strongest restoration, 1 = closest to the input face."""


@dataclass(frozen=True)
class EncodeOptions:
    video_encoder: str = "libx264"
    video_quality: int | None = None
    """Encoder quality on a 0 (best) .. 51 scale (CRF-like); None = CRF 18 for x264/x265, else the
    encoder's default."""
    video_preset: str | None = None
    """None = veryfast for x264/x265 (real time on 2 cores at 720p), the encoder's own default otherwise."""
    trim_start: float | None = None
    """Seconds from the start of the target video."""
    trim_end: float | None = None
    skip_audio: bool = False
    image_quality: int = 95
    """JPEG / WebP quality for image outputs."""


Precision = Literal["auto", "fp32", "fp16", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16", "int8")


@dataclass(frozen=True)
class RuntimeOptions:
    execution_provider: str = "cpu"
    execution_threads: int | None = None
    """Threads for inference; None = the runtime's default."""
    models_dir: Path | None = None
    """Override of the model cache folder (else MASQUERADE_HOME or the per-user default)."""
    torch_compile: bool = False
    """PyTorch providers: compile each model with ``torch.compile`` (a minute or more of warm-up per
    model, repaid on long videos; the batch stays dynamic)."""
    frame_workers: int | None = None
    """Threads that swap, enhance and watermark batches while the next one is analysed; None: half
    the cores, 1 to 4."""
    frame_batch: int | None = None
    """Video frames per processing batch (the swapper gets all their faces in one call); None: 8 on
    the PyTorch providers, 1 elsewhere."""
    precision: Precision = "auto"
    """Arithmetic of the neural models. ``auto``: fp16 on torch-cuda, else the model file's own.
    ``fp16``/``bf16``: the PyTorch providers only. ``int8``: the cpu provider only; the swapper and the
    enhancer are quantised once per model file and used only if they pass a quality gate against fp32
    (:mod:`masquerade.models.quantize`)."""


@dataclass(frozen=True)
class RunConfig:
    detect: DetectOptions = field(default_factory=DetectOptions)
    track: TrackOptions = field(default_factory=TrackOptions)
    select: SelectOptions = field(default_factory=SelectOptions)
    swap: SwapOptions = field(default_factory=SwapOptions)
    enhance: EnhanceOptions = field(default_factory=EnhanceOptions)
    encode: EncodeOptions = field(default_factory=EncodeOptions)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    recognizer: str = "dlib"


def check_selection(config: RunConfig) -> None:
    """Raise UsageError for face-selection options that contradict each other (before any work)."""
    from masquerade.errors import UsageError

    select = config.select
    if select.face_index < 0:
        raise UsageError(f"--face-index must be >= 0, got {select.face_index}")
    if select.reference_frame is not None:
        if select.reference_frame < 0:
            raise UsageError(f"--reference-frame must be >= 0, got {select.reference_frame}")
        if select.reference is not None:
            raise UsageError("--reference and --reference-frame both name the person: give one")
        if select.mode != "reference":
            raise UsageError(f"--reference-frame picks a person to match, not --faces {select.mode}")
    for entry in select.mapping:
        if not entry.sources:
            raise UsageError(f"--map {entry.reference}=...: give at least one source photo")
    if config.swap.swapper == NO_SWAP:
        if config.enhance.enhancer == "none":
            raise UsageError("an enhance-only run needs an --enhancer")
        if select.mapping:
            raise UsageError("--map chooses sources to swap in; an enhance-only run swaps nothing")
