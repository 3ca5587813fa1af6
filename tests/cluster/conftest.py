"""Fixtures: a short clip with a key frame every 0.8 s (three segments), swapped on one machine."""

from __future__ import annotations

from pathlib import Path

import pytest
from segment_clips import CLIP_FRAMES, GOP, LOSSLESS_ALL, Positions, Run, make_gop_clip

from masquerade.api import swap
from masquerade.pipeline import Pipeline


@pytest.fixture(scope="session")
def gop_clip(tmp_path_factory, examples_dir) -> Path:
    """2.4 s of the sample at 320x180, a key frame every 0.8 s, with its audio."""
    return make_gop_clip(examples_dir / "sample.mp4", tmp_path_factory.mktemp("gop") / "clip.mp4",
                         seconds=CLIP_FRAMES / 25, size=(320, 180), gop=GOP)


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
