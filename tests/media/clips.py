"""Small synthetic clips made with PyAV, and probes of what a file holds, for the media tests."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def marker_frame(index: int, width: int, height: int) -> np.ndarray:
    """A frame whose top-left corner is white (to check orientation) and whose brightness encodes index."""
    image = np.full((height, width, 3), 40 + (index * 7) % 160, np.uint8)
    image[: height // 4, : width // 4] = 255
    image[-height // 4 :, -width // 8 :, 2] = 0
    return image


def make_clip(
    path: Path,
    frames: int = 25,
    size: tuple[int, int] = (160, 120),
    fps: int = 25,
    audio: bool = True,
    vfr: bool = False,
    rotation: int = 0,
    audio_codec: str = "aac",
    video_codec: str = "libx264",
    options: dict[str, str] | None = None,
) -> list[int]:
    """Write a clip (H.264 + optional AAC) and return the video pts it was given, in ms when ``vfr``."""
    width, height = size
    time_base = Fraction(1, 1000) if vfr else Fraction(1, fps)
    written = []
    with av.open(str(path), "w", options=options or {}) as out:
        video = out.add_stream(video_codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.codec_context.time_base = time_base
        if rotation:
            video.set_display_rotation(rotation)
        if audio:
            sound = out.add_stream(audio_codec, rate=48000)
            sound.layout = "mono"
        pts = 0
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(marker_frame(i, width, height), format="bgr24")
            frame.pts, frame.time_base = pts, time_base
            written.append(pts)
            pts += (40 if i % 3 else 90) if vfr else 1
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if audio:
            rate, total = 48000, int(48000 * frames / fps)
            for start in range(0, total, 1024):
                n = min(1024, total - start)
                t = np.arange(start, start + n) / rate
                samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
                chunk = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = rate, start
                out.mux(sound.encode(chunk))
            out.mux(sound.encode())
    return written


def packets(path: Path, kind: str) -> list[tuple[int, int, bytes]]:
    """(pts, dts, payload) of every packet of the first ``kind`` stream."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        if not streams:
            return []
        return [(p.pts, p.dts, bytes(p)) for p in container.demux(streams[0]) if p.dts is not None]


def video_timing(path: Path) -> tuple[list[int], Fraction, int]:
    """Decoded frames' pts, the stream time base, and the end of the last frame (pts + duration)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return [f.pts for f in frames], stream.time_base, frames[-1].pts + frames[-1].duration
