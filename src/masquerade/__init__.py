"""masquerade: face swapping for images and videos that works offline and labels its output."""

from masquerade._version import __version__
from masquerade.api import RunHooks, RunSummary, enhance, find_people, swap, swap_image
from masquerade.batch import BatchHooks, BatchSummary, FileResult, enhance_many, swap_many
from masquerade.config import (
    DetectOptions,
    EncodeOptions,
    EnhanceOptions,
    LimitOptions,
    MapEntry,
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
from masquerade.people import Appearance, People, Person
from masquerade.pipeline import Pipeline, SourceMap
from masquerade.types import Face, FrameContext

__all__ = [
    "Appearance",
    "BatchHooks",
    "BatchSummary",
    "DetectOptions",
    "EncodeOptions",
    "EnhanceOptions",
    "Face",
    "FileResult",
    "FrameContext",
    "LimitOptions",
    "MapEntry",
    "MasqueradeError",
    "MediaError",
    "ModelError",
    "NoSourceFaceError",
    "OptionProblem",
    "OutputError",
    "People",
    "Person",
    "Pipeline",
    "RunConfig",
    "RunHooks",
    "RunSummary",
    "RuntimeOptions",
    "SelectOptions",
    "SourceMap",
    "SwapOptions",
    "TrackOptions",
    "UsageError",
    "__version__",
    "config_problems",
    "enhance",
    "enhance_many",
    "find_people",
    "swap",
    "swap_image",
    "swap_many",
    "validate",
]
