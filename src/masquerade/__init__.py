"""masquerade: face swapping for images and videos that works offline and labels its output."""

from masquerade._version import __version__
from masquerade.api import RunHooks, RunSummary, swap, swap_image
from masquerade.config import (
    DetectOptions,
    EncodeOptions,
    EnhanceOptions,
    LimitOptions,
    OptionProblem,
    RunConfig,
    RuntimeOptions,
    SelectOptions,
    SwapOptions,
    TrackOptions,
    config_problems,
    validate,
)
from masquerade.errors import (
    MasqueradeError,
    MediaError,
    ModelError,
    NoSourceFaceError,
    OutputError,
    UsageError,
)
from masquerade.pipeline import Pipeline
from masquerade.types import Face, FrameContext

__all__ = [
    "DetectOptions",
    "EncodeOptions",
    "EnhanceOptions",
    "Face",
    "FrameContext",
    "LimitOptions",
    "MasqueradeError",
    "MediaError",
    "ModelError",
    "NoSourceFaceError",
    "OptionProblem",
    "OutputError",
    "Pipeline",
    "RunConfig",
    "RunHooks",
    "RunSummary",
    "RuntimeOptions",
    "SelectOptions",
    "SwapOptions",
    "TrackOptions",
    "UsageError",
    "__version__",
    "config_problems",
    "swap",
    "swap_image",
    "validate",
]
