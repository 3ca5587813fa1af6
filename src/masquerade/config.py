"""Frozen option objects. A run's options travel in one ``RunConfig``; nothing is global."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from masquerade.errors import UsageError

FaceMode = Literal["reference", "all", "one", "index"]
FACE_MODES: tuple[str, ...] = ("reference", "all", "one", "index")
TargetKind = Literal["image", "video"]


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
    scan_interval: int = 3
    """Between detection passes, look for newly arrived faces every N frames with the detector's cheap
    whole-image pass (0 = never): a face that comes in or turns back is swapped within N frames, so
    it shows unswapped for at most N - 1. 3, not 2: a scan costs ~45 ms of detector runs on a moving
    720p camera; every third frame keeps any pop-in to 2 frames (the 720p group clip: 99.2 % of the
    faces an outside detector sees swapped, against 99.4 % at 2) for 6 ms a frame less."""
    scan_tiles: int = 5
    """Small-face tiles (the detector's short-range tiles) each scan looks at, in turn; while every face
    is followed the periodic detection pass is then a scan too (0 = a full pass runs all tiles)."""
    smoothing_min_cutoff: float = 1.0
    """One-Euro filter: cut-off frequency (Hz) at rest; lower = smoother when still."""
    smoothing_beta: float = 20.0
    """One-Euro filter: Hz of cut-off per face-size/s of head speed; higher = less lag on fast motion
    (steady lag is about face size / (2 pi beta) px: ~1.6 px for a 200 px face). 20, not 80: the mesh's
    own jitter on a rolling or turning head added 3 % of flicker inside the swapped faces of the 720p
    group clip (1.02-1.03x the input's own change; 0.999x at 20)."""


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
    the cores, 1 to 4 (at least 2 for the embedded swap without an enhancer)."""
    frame_batch: int | None = None
    """Video frames per processing batch (the swapper gets all their faces in one call); None: 8 on
    the PyTorch providers, 3 for the embedded swap (it analyses a face on one frame of a batch and
    carries that to the others), 1 elsewhere."""
    precision: Precision = "auto"
    """Arithmetic of the neural models. ``auto``: fp16 on torch-cuda, else the model file's own.
    ``fp16``/``bf16``: the PyTorch providers only. ``int8``: the cpu provider only; the swapper and the
    enhancer are quantised once per model file and used only if they pass a quality gate against fp32
    (:mod:`masquerade.models.quantize`)."""


DEFAULT_MAX_IMAGE_MEGAPIXELS = 50.0
"""A 50 MP still (8660 x 5773) takes about 1.2 GB of working memory and seconds per stage."""
DEFAULT_MAX_VIDEO_MEGAPIXELS = 33.2
"""8K UHD (7680 x 4320 = 33.18 MP) per frame."""


@dataclass(frozen=True)
class LimitOptions:
    """The largest pictures a run accepts; larger ones are refused from their header, before decoding,
    so a small file that claims a huge size cannot take the machine's memory and hours of work."""

    max_image_megapixels: float = DEFAULT_MAX_IMAGE_MEGAPIXELS
    max_video_megapixels: float = DEFAULT_MAX_VIDEO_MEGAPIXELS
    """Per frame."""

    @property
    def max_image_pixels(self) -> int:
        return int(self.max_image_megapixels * 1e6)

    @property
    def max_video_pixels(self) -> int:
        return int(self.max_video_megapixels * 1e6)


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
    limits: LimitOptions = field(default_factory=LimitOptions)


# -- the options' vocabulary, shared by the CLI parser, the stage factory and the validation below --
DETECTORS: tuple[str, ...] = ("mesh", "scrfd")
RECOGNIZERS: tuple[str, ...] = ("dlib", "arcface")
SWAPPERS: tuple[str, ...] = ("mesh", "inswapper_128", "inswapper_128_fp16", "hyperswap_1a_256",
                             "hyperswap_1b_256", "hyperswap_1c_256")
ENHANCERS: tuple[str, ...] = ("none", "gfpgan_1.4", "codeformer")
ONNX_PROVIDERS: tuple[str, ...] = ("cpu", "cuda", "tensorrt", "coreml", "directml", "rocm", "openvino")
TORCH_PROVIDERS: tuple[str, ...] = ("torch-cuda", "torch-cpu")
PROVIDERS: tuple[str, ...] = ONNX_PROVIDERS + TORCH_PROVIDERS
PIXEL_BOOSTS: tuple[int, ...] = (256, 512)
MAX_EXECUTION_THREADS = 256
MAX_FRAME_WORKERS = 32
MAX_FRAME_BATCH = 256
"""More frames per batch only holds more decoded frames in memory; the GPU is saturated long before."""
MAX_DISTANCE = 2.0
"""Both recognizers compare unit-length embeddings: distances run from 0 (same) to 2 (opposite)."""


@dataclass(frozen=True)
class OptionProblem:
    """One invalid option: its name as the command line spells it (``--enhancer-blend``; options that
    have no flag are named by their field, ``track.max_missed``) and why, in one sentence."""

    option: str
    message: str

    def __str__(self) -> str:
        return self.message


def uses_neural_models(config: RunConfig) -> bool:
    """Whether any model of the run goes through ``--execution-provider`` (the embedded detector,
    recognizer and mesh swapper run on the CPU through their own runtimes, whatever the provider)."""
    return (config.detect.detector != "mesh" or config.swap.swapper not in ("mesh", NO_SWAP)
            or config.enhance.enhancer != "none"
            or (config.recognizer != "dlib" and matches_people(config)))


VIDEO_ENCODE_FIELDS = ("video_encoder", "video_quality", "video_preset", "trim_start", "trim_end",
                       "skip_audio")
"""``EncodeOptions`` fields that only videos use (``image_quality`` is the images' own)."""


def config_for_kind(config: RunConfig, kind: TargetKind) -> RunConfig:
    """``config`` for one target of a batch: the options of the other kind of target left at their
    defaults (a batch's video options are for its videos, its image quality for its images)."""
    defaults = EncodeOptions()
    if kind == "image":
        keep = {name: getattr(defaults, name) for name in VIDEO_ENCODE_FIELDS}
        return replace(config, encode=replace(config.encode, **keep))
    return replace(config, encode=replace(config.encode, image_quality=defaults.image_quality))


def matches_people(config: RunConfig) -> bool:
    """Whether the run tells people apart (``--faces reference``, ``--map``): it then needs the
    recognizer, and ``--similarity`` is its threshold."""
    return config.select.mode == "reference" or bool(config.select.mapping)


class Problems:
    """Collects :class:`OptionProblem`s, with the range checks every option shares."""

    def __init__(self) -> None:
        self.found: list[OptionProblem] = []

    def add(self, option: str, message: str) -> None:
        self.found.append(OptionProblem(option, message))

    def choice(self, option: str, value: object, allowed: tuple[object, ...]) -> bool:
        if value in allowed:
            return True
        self.add(option, f"{option}: unknown value {value!r}; choose from {', '.join(map(str, allowed))}")
        return False

    def number(self, option: str, value: object, low: float, high: float, what: str = "") -> bool:
        """``value`` is None or a finite number in ``low..high``."""
        if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and math.isfinite(value) and low <= value <= high):
            return True
        self.add(option, f"{option} must be {what or f'between {low:g} and {high:g}'}, got {value!r}")
        return False

    def whole(self, option: str, value: object, low: int, high: int | None = None) -> bool:
        """``value`` is None or an int in ``low..high``."""
        if value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= low
                             and (high is None or value <= high)):
            return True
        span = f"between {low} and {high}" if high is not None else f"at least {low}"
        self.add(option, f"{option} must be {span}, got {value!r}")
        return False


def config_problems(config: RunConfig, kind: TargetKind | None = None) -> list[OptionProblem]:
    """Every option of ``config`` that is out of range, unknown, or has no effect on this run.

    Pure (no files, models or devices are touched). ``kind`` is the target's kind when known: options
    of the other kind are then reported too (``--trim-start`` on an image). An option left at its
    default is never reported as not applying, so only what the user changed can be.
    """
    problems = Problems()
    _check_models(config, problems)
    _check_select(config, problems)
    _check_encode(config.encode, kind, problems)
    _check_runtime(config, problems)
    _check_internals(config, problems)
    limits = config.limits
    problems.number("--max-image-megapixels", limits.max_image_megapixels, 0.01, 1000.0)
    problems.number("--max-video-megapixels", limits.max_video_megapixels, 0.01, 1000.0)
    return problems.found


def validate(config: RunConfig, kind: TargetKind | None = None) -> None:
    """Raise ``UsageError`` naming every invalid option of ``config`` (see :func:`config_problems`).

    The one check of options: the CLI, ``masquerade.swap`` and any other front end call it, so the same
    request is refused the same way everywhere.
    """
    problems = config_problems(config, kind)
    if problems:
        raise UsageError("; ".join(p.message for p in problems))


def _check_models(config: RunConfig, problems: Problems) -> None:
    swap, enhance = config.swap, config.enhance
    problems.choice("--detector", config.detect.detector, DETECTORS)
    problems.choice("--recognizer", config.recognizer, RECOGNIZERS)
    if swap.swapper == NO_SWAP:  # masquerade enhance
        if enhance.enhancer == "none":
            problems.add("--enhancer", "enhancing only needs an --enhancer (gfpgan_1.4 or codeformer)")
        if config.select.mapping:
            problems.add("--map", "--map chooses faces to swap in; enhancing only swaps nothing")
    known = swap.swapper == NO_SWAP or problems.choice("--swapper", swap.swapper, SWAPPERS)
    problems.choice("--mask", swap.mask, ("box", "mesh"))
    if swap.swapper in ("mesh", NO_SWAP):
        if swap.pixel_boost is not None:
            problems.add("--pixel-boost", "--pixel-boost applies to neural swappers only (--swapper "
                         "inswapper_128, hyperswap_1a_256...); the mesh swapper works at the face's own size")
        if swap.mask != "box":
            problems.add("--mask", "--mask applies to neural swappers only; the mesh swapper blends along "
                                   "the face mesh itself")
    elif swap.pixel_boost is not None and problems.choice("--pixel-boost", swap.pixel_boost, PIXEL_BOOSTS):
        from masquerade.models.manifest import get_spec

        size = (get_spec(swap.swapper).size_px or 0) if known else 0
        if swap.pixel_boost <= size:
            problems.add("--pixel-boost", f"--pixel-boost {swap.pixel_boost} does nothing for "
                                          f"{swap.swapper}, which works at {size} px already; use 512 or "
                                          "leave it out")
    defaults = EnhanceOptions()
    problems.number("--enhancer-blend", enhance.blend, 0.0, 1.0)
    problems.number("--enhancer-fidelity", enhance.fidelity, 0.0, 1.0)
    if problems.choice("--enhancer", enhance.enhancer, ENHANCERS):
        if enhance.enhancer == "none" and enhance.blend != defaults.blend:
            problems.add("--enhancer-blend", "--enhancer-blend applies only with --enhancer (gfpgan_1.4 or "
                                             "codeformer)")
        if enhance.enhancer != "codeformer" and enhance.fidelity != defaults.fidelity:
            problems.add("--enhancer-fidelity", "--enhancer-fidelity applies only with --enhancer codeformer")


def _check_select(config: RunConfig, problems: Problems) -> None:
    select = config.select
    if not problems.choice("--faces", select.mode, FACE_MODES):
        return
    problems.whole("--face-index", select.face_index, 0)
    if select.mode != "index" and select.face_index != 0 and select.reference_frame is None:
        problems.add("--face-index", "--face-index applies only with --faces index or --reference-frame")
    if problems.whole("--reference-frame", select.reference_frame, 0) and select.reference_frame is not None:
        if select.reference is not None:
            problems.add("--reference-frame", "--reference and --reference-frame both name the person: give "
                                              "one")
        if select.mode != "reference":
            problems.add("--reference-frame", f"--reference-frame picks the person --faces reference "
                                              f"matches; it does not go with --faces {select.mode}")
    for entry in select.mapping:
        if not entry.sources:
            problems.add("--map", f"--map {entry.reference}=...: give at least one source photo")
    if select.mode != "reference":
        if select.reference is not None:
            problems.add("--reference", "--reference applies only with --faces reference")
        if not select.mapping:
            if select.similarity is not None:
                problems.add("--similarity", "--similarity applies only with --faces reference or --map (it "
                                             "is how close a face must be to the person)")
            if config.recognizer != "dlib":
                problems.add("--recognizer", "--recognizer applies only with --faces reference or --map (it "
                                             "matches faces against the person)")
    similarity = select.similarity
    in_scale = isinstance(similarity, (int, float)) and 0.0 < similarity < MAX_DISTANCE
    if similarity is not None and not in_scale:
        problems.add("--similarity", f"--similarity is an identity distance, above 0 (the same face) and "
                                     f"below {MAX_DISTANCE:g} (opposite faces), got {similarity!r} (default: "
                                     "0.42 for dlib, 0.6 for arcface)")


def _check_encode(encode: EncodeOptions, kind: TargetKind | None, problems: Problems) -> None:
    defaults = EncodeOptions()
    problems.whole("--video-quality", encode.video_quality, 0, 51)
    from masquerade.media.options import IMAGE_QUALITY_MIN

    if problems.whole("--image-quality", encode.image_quality, 1, 100) and (
        encode.image_quality < IMAGE_QUALITY_MIN
    ):
        problems.add("--image-quality", f"--image-quality must be between {IMAGE_QUALITY_MIN} and 100: "
                                        f"below {IMAGE_QUALITY_MIN} the invisible watermark that labels the "
                                        f"output may not survive, got {encode.image_quality}")
    start_ok = problems.number("--trim-start", encode.trim_start, 0.0, math.inf, "a number of seconds >= 0")
    end_ok = problems.number("--trim-end", encode.trim_end, 0.0, math.inf, "a number of seconds >= 0")
    start, end = encode.trim_start, encode.trim_end
    if start_ok and end_ok and end is not None and end <= (start or 0.0):
        problems.add("--trim-end", f"--trim-end ({end:g} s) must be after --trim-start ({start or 0:g} s)")
    if isinstance(encode.video_encoder, str) and isinstance(encode.video_preset, (str, type(None))):
        from masquerade.media.options import encoder_options

        try:  # the encoder's name and preset, by the same pure builder the writer uses
            encoder_options(encode.video_encoder, None, encode.video_preset)
        except UsageError as error:
            option = "--video-preset" if "preset" in str(error) else "--video-encoder"
            problems.add(option, f"{option}: {error}")
    if kind == "image":
        for option, changed in (("--video-encoder", encode.video_encoder != defaults.video_encoder),
                                ("--video-quality", encode.video_quality is not None),
                                ("--video-preset", encode.video_preset is not None),
                                ("--trim-start", encode.trim_start is not None),
                                ("--trim-end", encode.trim_end is not None),
                                ("--skip-audio", encode.skip_audio)):
            if changed:
                problems.add(option, f"{option} applies to video targets only; the target is an image")
    elif kind == "video" and encode.image_quality != defaults.image_quality:
        problems.add("--image-quality", "--image-quality applies to image targets only; the target is a "
                                        "video")


def _check_runtime(config: RunConfig, problems: Problems) -> None:
    runtime = config.runtime
    problems.whole("--execution-threads", runtime.execution_threads, 1, MAX_EXECUTION_THREADS)
    problems.whole("--frame-workers", runtime.frame_workers, 1, MAX_FRAME_WORKERS)
    problems.whole("--frame-batch", runtime.frame_batch, 1, MAX_FRAME_BATCH)
    provider = runtime.execution_provider
    if not problems.choice("--execution-provider", provider, PROVIDERS):
        return
    if provider != "cpu" and not uses_neural_models(config):
        problems.add("--execution-provider",
                     f"--execution-provider {provider} has nothing to run: the embedded detector, recognizer "
                     "and mesh swapper run on the CPU through their own runtimes; choose a neural model "
                     "(--swapper, --detector scrfd, --enhancer) or leave the provider at cpu")
    if runtime.torch_compile and provider not in TORCH_PROVIDERS:
        problems.add("--torch-compile", "--torch-compile needs --execution-provider torch-cuda or torch-cpu")
    precision = runtime.precision
    if not problems.choice("--precision", precision, PRECISIONS):
        return
    if precision in ("fp32", "fp16", "bf16") and provider not in TORCH_PROVIDERS:
        problems.add("--precision", f"--precision {precision} needs --execution-provider torch-cuda or "
                                    "torch-cpu (onnxruntime runs each model file in its own precision)")
    if precision == "int8":
        if provider != "cpu":
            problems.add("--precision", "--precision int8 is for the cpu execution provider")
        elif config.swap.swapper in ("mesh", NO_SWAP) and config.enhance.enhancer == "none":
            problems.add("--precision", "--precision int8 quantises neural models: choose one with --swapper "
                                        "or --enhancer")


def _check_internals(config: RunConfig, problems: Problems) -> None:
    """Options the Python API has and the command line does not."""
    detect, track = config.detect, config.track
    problems.number("detect.min_score", detect.min_score, 0.0, 1.0)
    problems.number("detect.presence_threshold", detect.presence_threshold, 0.0, 1.0)
    problems.whole("track.redetect_interval", track.redetect_interval, 1)
    problems.whole("track.search_interval", track.search_interval, 1)
    problems.whole("track.max_missed", track.max_missed, 0)
    problems.whole("track.scan_interval", track.scan_interval, 0)
    problems.whole("track.scan_tiles", track.scan_tiles, 0)
    problems.number("track.smoothing_min_cutoff", track.smoothing_min_cutoff, 1e-6, 1e6, "positive")
    problems.number("track.smoothing_beta", track.smoothing_beta, 0.0, 1e6, ">= 0")
