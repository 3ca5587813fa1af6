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
    scan_interval: int = 2
    """Between detection passes, look for newly arrived faces every N frames with the detector's cheap
    whole-image pass (0 = never): a face entering the frame is swapped within N frames."""
    smoothing_min_cutoff: float = 1.0
    """One-Euro filter: cut-off frequency (Hz) at rest; lower = smoother when still."""
    smoothing_beta: float = 80.0
    """One-Euro filter: Hz of cut-off per face-size/s of head speed; higher = less lag on fast motion
    (steady lag is about face size / (2 pi beta) px: ~0.4 px for a 200 px face)."""


@dataclass(frozen=True)
class SelectOptions:
    mode: FaceMode = "reference"
    face_index: int = 0
    """For ``mode="index"``: which face, counted from the left, 0-based."""
    reference: Path | None = None
    """Image of the person whose faces are swapped; None = the largest face in the first frame with one."""
    similarity: float | None = None
    """Distance threshold for a reference match; None = the recognizer's measured default."""


@dataclass(frozen=True)
class SwapOptions:
    swapper: str = "mesh"
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
