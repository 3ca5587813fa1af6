"""A private masquerade home per test, no user certificate in the environment, and small media makers."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from masquerade.provenance.keys import CERT_ENV, KEY_ENV


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv("MASQUERADE_HOME", str(folder))
    monkeypatch.delenv(CERT_ENV, raising=False)
    monkeypatch.delenv(KEY_ENV, raising=False)
    return folder


def _make_video(
    path: Path, frames: list[np.ndarray], codec: str = "libx264", fps: int = 24, audio: str | None = None,
    tags: dict[str, str] | None = None,
) -> Path:
    """Encode BGR frames (and optionally a short sine tone) with PyAV."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as container:
        container.metadata.update(tags or {})
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = None
        if audio:
            sound = container.add_stream(audio, rate=48000)
            sound.layout = "mono"
        for image in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            samples = len(frames) * 48000 // fps
            tone = (0.2 * np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000)).astype(np.float32)
            chunk = sound.codec_context.frame_size or 1024
            for start in range(0, samples, chunk):
                piece = tone[None, start : start + chunk]
                frame = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                frame.sample_rate = 48000
                frame.pts = start
                frame.time_base = Fraction(1, 48000)
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def _count_frames(path: Path) -> dict[str, int]:
    """Decoded frames per stream type."""
    counts: dict[str, int] = {}
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


@pytest.fixture(scope="session")
def make_video():
    return _make_video


@pytest.fixture(scope="session")
def count_frames():
    return _count_frames
