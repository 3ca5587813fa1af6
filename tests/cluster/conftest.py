"""Fixtures: a short clip with a key frame every 0.8 s (three segments), swapped on one machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from segment_clips import make_gop_clip

from masquerade.api import RunHooks, RunSummary, swap
from masquerade.config import EncodeOptions, RunConfig, SelectOptions
from masquerade.pipeline import Pipeline
from masquerade.types import FrameContext

CLIP_FRAMES, GOP = 60, 20
"""2.4 s at 25 fps, a key frame every 0.8 s: segments of frames 0-19, 20-39, 40-59."""


@pytest.fixture(scope="session")
def gop_clip(tmp_path_factory, examples_dir) -> Path:
    """2.4 s of the sample at 320x180, a key frame every 0.8 s, with its audio."""
    return make_gop_clip(examples_dir / "sample.mp4", tmp_path_factory.mktemp("gop") / "clip.mp4",
                         seconds=CLIP_FRAMES / 25, size=(320, 180), gop=GOP)


LOSSLESS_ALL = RunConfig(select=SelectOptions(mode="all"), encode=EncodeOptions(video_quality=0))
"""Every face, encoded losslessly: outputs differ only where the pipeline's pixels differ."""


@dataclass
class Run:
    output: Path
    summary: RunSummary
    centres: dict[int, np.ndarray] = field(default_factory=dict)
    """Frame index -> centre of the swapped face's key points, as tracked and smoothed."""


class Positions(RunHooks):
    def __init__(self, run: Run) -> None:
        self.run = run

    def on_frame(self, frame: FrameContext) -> None:
        if frame.selected:
            self.run.centres[frame.index] = frame.selected[0].kps5.mean(axis=0)


@pytest.fixture(scope="session")
def lossless_pipeline() -> Pipeline:
    return Pipeline(LOSSLESS_ALL)


@pytest.fixture(scope="session")
def single_run(tmp_path_factory, gop_clip, examples_dir, lossless_pipeline) -> Run:
    """The clip swapped on one machine, losslessly, with the tracked face positions."""
    run = Run(tmp_path_factory.mktemp("single") / "single.mp4", None)  # type: ignore[arg-type]
    run.summary = swap([examples_dir / "astronaut.png"], gop_clip, run.output, LOSSLESS_ALL, Positions(run),
                       pipeline=lossless_pipeline)
    return run
