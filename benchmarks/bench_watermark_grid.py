"""Does ``masquerade verify`` read the watermark after every encoder setting masquerade accepts?

For each encoder x quality x frame size x preset: short clips are watermarked as the pipeline does it,
encoded with the options ``masquerade swap`` would use (``media.options.encoder_options``), then
remuxed without re-encoding into a metadata-free Matroska file (what ``ffmpeg -c copy`` does, so no
C2PA or tag survives), and ``masquerade.verify.verify_file`` reads it. A cell's figure is the share of
sampled frames on which the watermark was read, over the three clips; ``hard`` is reported apart.

Clips (1.6 s, 25 fps, rendered in memory from the public-domain photos in examples/):
- ``camera``: the benchmark's virtual camera over obama2.jpg (slow drift, zoom and roll, one face, a
  flat blurred backdrop): footage from a tripod or a held phone;
- ``sample``: examples/sample.mp4's camera path (the face slides across the frame, the camera closes in);
- ``pan``: a fast pan-and-zoom across biden.jpg (10-15 px per frame at 720p);
- ``hard``: the same pan-and-zoom across astronaut.png, a 512 px photo blown up to the frame: soft,
  fast-moving content. A codec's motion compensation drags a static pattern along with such a picture
  and its quantiser erases what is left; no pattern we measured that stays invisible survives it at
  low bitrates, so this clip is shown for what it is, not counted in the limits.

Run:  .venv/bin/python benchmarks/bench_watermark_grid.py [--quick] [--out FILE]
      .venv/bin/python benchmarks/bench_watermark_grid.py --encoders libx264 --sizes 360p --qualities 40 45
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from masquerade._stages.watermark import WatermarkEmbedder
from masquerade.bench.clips import _canvas, render_frame
from masquerade.media.encoders import available_video_encoders, pixel_format
from masquerade.media.options import PRESETS, QUALITY_MAX, encoder_options, quality_limit, video_quality
from masquerade.verify import verify_file

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_watermark import EXAMPLES, clip

FPS = 25
SECONDS = 1.6
SIZES = {"144p": (256, 144), "180p": (320, 180), "240p": (426, 240), "360p": (640, 360),
         "720p": (1280, 720), "portrait": (720, 1280), "1080p": (1920, 1080)}
READ_FRAMES = 8  # per clip, spread over it
COUNTED = ("camera", "sample", "pan")


def camera_clip(size: tuple[int, int]) -> list[np.ndarray]:
    canvas, face = _canvas(cv2.imread(str(EXAMPLES / "obama2.jpg"), cv2.IMREAD_COLOR))
    return [render_frame(canvas, face, i / FPS, size, 1) for i in range(round(SECONDS * FPS))]


def sample_clip(size: tuple[int, int]) -> list[np.ndarray]:
    """examples/sample.mp4's camera path (its middle, fastest part), at ``size``."""
    sys.path.insert(0, str(EXAMPLES))
    import make_sample_clip as sample

    canvas, face = sample._canvas()
    return [sample._render(canvas, face, sample._sample_pose(2.0 + i / FPS), size)
            for i in range(round(SECONDS * FPS))]


def pan_clip(size: tuple[int, int], photo: str = "biden.jpg") -> list[np.ndarray]:
    return clip(cv2.imread(str(EXAMPLES / photo), cv2.IMREAD_COLOR), SECONDS, size)


def clips_at(size: tuple[int, int]) -> dict[str, list[np.ndarray]]:
    return {"camera": camera_clip(size), "sample": sample_clip(size), "pan": pan_clip(size),
            "hard": pan_clip(size, "astronaut.png")}


def encode(frames: Sequence[np.ndarray], encoder: str, quality: int | None, preset: str | None) -> bytes:
    """The clip as masquerade's writer would encode it (quality, options, pixel format), as MP4 bytes."""
    height, width = frames[0].shape[:2]
    buf = io.BytesIO()
    if quality is None or quality <= quality_limit(encoder, width, height):  # else: what it refuses
        quality = video_quality(encoder, quality, width, height)
    with av.open(buf, "w", format="mp4") as out:
        stream = out.add_stream(encoder, rate=FPS, options=encoder_options(encoder, quality, preset))
        stream.width, stream.height = width, height
        stream.pix_fmt = pixel_format(encoder, width, height)
        stream.codec_context.time_base = Fraction(1, FPS)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


def remux(data: bytes, path: Path) -> Path:
    """Stream-copy the video into a Matroska file with no metadata (``ffmpeg -c copy -map_metadata -1``)."""
    with av.open(io.BytesIO(data)) as src, av.open(str(path), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0], opaque=True)
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is None:
                continue
            packet.stream = stream
            dst.mux(packet)
    return path


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / mse) if mse > 0 else float("inf")


def first_frame(data: bytes) -> np.ndarray:
    with av.open(io.BytesIO(data)) as src:
        return next(src.decode(video=0)).to_ndarray(format="bgr24")


@dataclass
class Cell:
    read: int = 0
    marked: int = 0
    hard_read: int = 0
    hard_marked: int = 0
    kbits: float = 0.0
    """Mean bitrate of the counted clips."""
    psnr: float = 0.0
    """Mean PSNR of the counted clips' first frames against the marked frames before encoding."""


def measure(
    clips: dict[str, list[np.ndarray]], encoder: str, quality: int | None, preset: str | None, folder: Path
) -> Cell:
    cell = Cell()
    for name, frames in clips.items():
        data = encode(frames, encoder, quality, preset)
        result = verify_file(remux(data, folder / f"{name}.mkv"), max_frames=READ_FRAMES)
        assert result.label.kind is None, "the remux must carry no label"
        if name not in COUNTED:
            cell.hard_read, cell.hard_marked = result.frames_read, result.frames_marked
            continue  # reported apart, not counted
        cell.kbits += len(data) * 8 / 1000 / SECONDS / len(COUNTED)
        cell.psnr += psnr(first_frame(data), frames[0]) / len(COUNTED)
        cell.read += result.frames_read
        cell.marked += result.frames_marked
    return cell


def find_limits(encoders: Sequence[str], sizes: Sequence[str], start: int) -> int:
    """The worst quality that keeps the mark on >= 95 % of frames, per encoder and size (default preset)."""
    embed = WatermarkEmbedder()
    steps = [q for q in (18, 20, 22, 23, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44) if q >= start]
    with tempfile.TemporaryDirectory() as tmp:
        for size_name in sizes:
            clips = {name: [embed(f) for f in frames] for name, frames in clips_at(SIZES[size_name]).items()
                     if name in COUNTED}
            for encoder in encoders:
                passed, tried = None, []
                for quality in steps:
                    cell = measure(clips, encoder, quality, None, Path(tmp))
                    tried.append(f"{quality}:{cell.marked}/{cell.read}")
                    if cell.marked < 0.95 * cell.read:
                        break
                    passed = quality
                print(f"{encoder:<11}{size_name:<9} limit {passed}   ({' '.join(tried)})", flush=True)
    return 0


def _quality(text: str) -> int | None:
    return None if text == "default" else int(text)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", nargs="+", help="default: every software encoder this FFmpeg has")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--qualities", nargs="+", type=_quality,
                        help="0..51, or 'default' for the encoder's default (at the default preset); "
                        "default: default, 0, 18 and the limit -2, +0, +2 for the size")
    parser.add_argument("--presets", nargs="*", default=list(PRESETS),
                        help="presets run at --preset-size, at the encoder's limit and default quality")
    parser.add_argument("--preset-size", default="360p", choices=list(SIZES),
                        help="the size the presets are measured at (360p: where the limits bind)")
    parser.add_argument("--all-accepted", action="store_true",
                        help="also the qualities masquerade refuses (above its limit) given by --qualities")
    parser.add_argument("--quick", action="store_true", help="360p and 720p, the default and the limit, "
                        "no preset sweep")
    parser.add_argument("--find-limits", action="store_true",
                        help="instead: per encoder and size, raise the quality from --start until fewer "
                        "than 95 %% of frames are marked, and print the last one that passed")
    parser.add_argument("--start", type=int, default=18, help="first quality --find-limits tries")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args(argv)
    if args.find_limits:
        return find_limits(args.encoders or [e for e in available_video_encoders() if e.startswith("lib")],
                           args.sizes, args.start)
    encoders = args.encoders or [e for e in available_video_encoders() if e.startswith("lib")]
    sizes = ["360p", "720p"] if args.quick else args.sizes
    presets = [] if args.quick else args.presets

    embed = WatermarkEmbedder()
    lines = [f"{'encoder':<11}{'size':<9}{'preset':<10}{'quality':>7}{'frames':>7}{'marked':>7}"
             f"{'rate':>6}{'hard':>6}{'kbit/s':>8}{'PSNR':>6}  note"]
    print(lines[0], flush=True)
    worst = 1.0
    started = time.perf_counter()

    def run(clips: dict[str, list[np.ndarray]], size_name: str, encoder: str, preset: str | None,
            qualities: Sequence[int | None], folder: Path) -> None:
        nonlocal worst
        limit = quality_limit(encoder, *SIZES[size_name])
        for quality in dict.fromkeys(qualities):
            refused = quality is not None and quality > limit
            if (quality or 0) > QUALITY_MAX or (refused and not args.all_accepted and quality != limit + 2):
                continue
            cell = measure(clips, encoder, quality, preset, folder)
            rate = cell.marked / cell.read
            if not refused:
                worst = min(worst, rate)
            hard = cell.hard_marked / cell.hard_read
            lowered = video_quality(encoder, None, *SIZES[size_name]) if quality is None else None
            shown = "default" if lowered is None else f"def>{lowered}"
            shown = shown if quality is None else str(quality)
            line = (f"{encoder:<11}{size_name:<9}{preset or 'default':<10}{shown:>7}{cell.read:>7}"
                    f"{cell.marked:>7}{rate * 100:>5.0f}%{hard * 100:>5.0f}%{cell.kbits:>8.0f}"
                    f"{cell.psnr:>6.1f}  {'refused by masquerade' if refused else ''}").rstrip()
            lines.append(line)
            print(line, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for size_name in dict.fromkeys([*sizes, *([args.preset_size] if presets else [])]):
            clips = {name: [embed(f) for f in frames] for name, frames in clips_at(SIZES[size_name]).items()}
            for encoder in encoders:
                limit = quality_limit(encoder, *SIZES[size_name])
                if size_name in sizes:
                    around = [None, 0, 18, limit - 2, limit, limit + 2]  # limit + 2: refused, shown
                    qualities = args.qualities or ([None, limit] if args.quick else around)
                    run(clips, size_name, encoder, None, qualities, Path(tmp))
                if size_name == args.preset_size:
                    for preset in presets:
                        run(clips, size_name, encoder, preset, [None, limit], Path(tmp))
    summary = (f"worst accepted setting: {worst * 100:.0f} % of sampled frames marked; "
               f"{time.perf_counter() - started:.0f} s")
    lines.append(summary)
    print(summary)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
