"""Fixtures: small synthetic clips (see clips.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from clips import make_clip


@pytest.fixture
def clip_factory(tmp_path: Path) -> Callable[..., Path]:
    def factory(name: str = "in.mp4", **kwargs: object) -> Path:
        path = tmp_path / name
        make_clip(path, **kwargs)  # type: ignore[arg-type]
        return path

    return factory


@pytest.fixture
def clip(clip_factory: Callable[..., Path]) -> Path:
    """1 s, 160x120, 25 fps H.264 + AAC mono."""
    return clip_factory()
