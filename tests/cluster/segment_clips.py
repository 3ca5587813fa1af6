"""A short clip with a key frame every 0.8 s (cut from the bundled sample), and what tests compare."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

from masquerade.api import RunHooks, RunSummary
from masquerade.config import EncodeOptions, RunConfig, SelectOptions
from masquerade.types import FrameContext

CLIP_FRAMES, GOP = 60, 20
"""2.4 s at 25 fps, a key frame every 0.8 s: segments of frames 0-19, 20-39, 40-59."""

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


def make_gop_clip(sample: Path, path: Path, seconds: float = 3.0, size: tuple[int, int] = (384, 216),
                  gop: int = 25, rotation: int = 0) -> Path:
    """The first ``seconds`` of ``sample`` at ``size``, H.264 with a key frame every ``gop`` frames, and
    its audio (if any) copied: a video a split run cuts into segments of ``gop`` frames."""
    with av.open(str(sample)) as source, av.open(str(path), "w") as out:
        video_in = source.streams.video[0]
        audio_in = source.streams.audio[0] if source.streams.audio else None
        video = out.add_stream("libx264", rate=video_in.average_rate,
                               options={"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0",
                                        "crf": "20", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.time_base = video_in.time_base
        if rotation:
            video.set_display_rotation(rotation)
        audio = out.add_stream_from_template(audio_in) if audio_in is not None else None
        end = int(seconds / video_in.time_base)
        for frame in source.decode(video_in):
            if frame.pts >= end:
                break
            image = cv2.resize(frame.to_ndarray(format="bgr24"), size, interpolation=cv2.INTER_AREA)
            scaled = av.VideoFrame.from_ndarray(image, format="bgr24")
            scaled.pts, scaled.time_base = frame.pts, video_in.time_base
            out.mux(video.encode(scaled))
        out.mux(video.encode())
        if audio_in is None:
            return path
        source.seek(0)
        for packet in source.demux(audio_in):
            if packet.dts is None or packet.pts * packet.time_base >= seconds:
                continue
            packet.stream = audio
            out.mux(packet)
    return path


def decoded(path: Path) -> tuple[list[int], list[np.ndarray]]:
    """Every frame's pts and BGR pixels."""
    with av.open(str(path)) as container:
        frames = list(container.decode(container.streams.video[0]))
        return [f.pts for f in frames], [f.to_ndarray(format="bgr24") for f in frames]


def packets(path: Path, kind: str) -> list[tuple[int, int, bytes]]:
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        return [(p.pts, p.dts, bytes(p)) for p in container.demux(streams[0]) if p.size] if streams else []


def duration(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return float(stream.duration * stream.time_base)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))


def _db(mse: float) -> float:
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return _db(_mse(a, b))


def clip_psnr(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    """PSNR of the whole clip: of the mean squared error over all frames (as FFmpeg's psnr filter)."""
    return _db(float(np.mean([_mse(x, y) for x, y in zip(a, b, strict=True)])))
