"""Make the sample clip (examples/sample.mp4) and longer benchmark clips from the bundled photos.

    python examples/make_sample_clip.py                 # writes examples/sample.mp4 (6 s, 960x540)
    python examples/make_sample_clip.py out.mp4 --seconds 60 --size 1280x720   # a benchmark clip

The picture is a virtual camera moving over obama2.jpg (public domain): the face drifts across the
frame, grows and tilts slightly, so detection and tracking have work to do. The sound is synthetic
(a tone sequence and a chirp), AAC, so the audio remux path is exercised too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
PHOTO = HERE / "obama2.jpg"
FACE_CENTRE = (370.0, 420.0)  # in obama2.jpg's pixels
AUDIO_RATE = 48000

# A camera pose at time t: face position in the frame (fractions of width/height), the crop width
# in photo pixels (smaller = closer), and the roll in degrees.
Pose = tuple[float, float, float, float]


def _canvas() -> tuple[np.ndarray, tuple[float, float]]:
    """obama2.jpg on a wide, blurred copy of itself, so a landscape camera never runs out of picture."""
    photo = cv2.imread(str(PHOTO), cv2.IMREAD_COLOR)
    if photo is None:
        raise FileNotFoundError(PHOTO)
    height, width = photo.shape[:2]
    canvas_width = int(height * 2.2)
    # The backdrop is the flag strip above the head, stretched and blurred: no second face in it.
    strip = photo[: height // 8]
    background = cv2.GaussianBlur(cv2.resize(strip, (canvas_width, height)), (0, 0), 25)
    canvas = (background * 0.6).astype(np.uint8)
    left = (canvas_width - width) // 2
    canvas[:, left : left + width] = photo
    return canvas, (FACE_CENTRE[0] + left, FACE_CENTRE[1])


def _render(canvas: np.ndarray, face: tuple[float, float], pose: Pose, size: tuple[int, int]) -> np.ndarray:
    fx, fy, crop_width, roll = pose
    width, height = size
    scale = width / crop_width
    matrix = cv2.getRotationMatrix2D(face, roll, scale)
    matrix[:, 2] += (fx * width - face[0], fy * height - face[1])
    return cv2.warpAffine(canvas, matrix, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def _sample_pose(t: float) -> Pose:
    """6 s: the face slides from left to right, the camera closes in and rolls a little."""
    s = min(max(t / 6.0, 0.0), 1.0)
    ease = s * s * (3 - 2 * s)
    return (0.30 + 0.40 * ease, 0.46 - 0.06 * ease, 1500 - 650 * ease, 6.0 * math.sin(math.pi * s))


def _benchmark_pose(t: float) -> Pose:
    """Any length: the face wanders on a slow Lissajous path and the camera breathes in and out."""
    return (
        0.5 + 0.22 * math.sin(2 * math.pi * t / 9.0),
        0.45 + 0.08 * math.sin(2 * math.pi * t / 5.0),
        1200 + 300 * math.sin(2 * math.pi * t / 13.0),
        4.0 * math.sin(2 * math.pi * t / 7.0),
    )


def _sound(start: int, count: int) -> np.ndarray:
    """Mono float samples ``start .. start+count``: a repeating five-note tune over a soft chirp."""
    t = (start + np.arange(count)) / AUDIO_RATE
    notes = np.array([261.63, 329.63, 392.0, 523.25, 392.0])
    step = (t / 0.4).astype(int)
    phase_in_note = (t % 0.4) / 0.4
    envelope = np.minimum(phase_in_note * 20, 1.0) * np.exp(-3 * phase_in_note)
    tune = 0.25 * envelope * np.sin(2 * np.pi * notes[step % len(notes)] * t)
    sweep = t % 3.0  # 200 Hz -> 1200 Hz every 3 s
    chirp = 0.05 * np.sin(2 * np.pi * (200 * sweep + (1000 / 6.0) * sweep**2))
    return (tune + chirp).astype(np.float32)


def _write(
    path: Path,
    seconds: float,
    size: tuple[int, int],
    fps: int,
    pose: Callable[[float], Pose],
    codec_options: dict[str, str],
) -> None:
    canvas, face = _canvas()
    frames = round(seconds * fps)
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=fps, options=codec_options)
        video.width, video.height, video.pix_fmt = size[0], size[1], "yuv420p"
        video.codec_context.time_base = Fraction(1, fps)
        audio = out.add_stream("aac", rate=AUDIO_RATE, options={"b": "96k"})
        audio.layout = "mono"
        audio_pts, chunk = 0, 1024
        for index in range(frames):
            image = _render(canvas, face, pose(index / fps), size)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(video.encode(frame))
            # Keep audio level with the video so the file is interleaved as it is written.
            while audio_pts < (index + 1) * AUDIO_RATE // fps:
                samples = _sound(audio_pts, chunk)[None]
                sound = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
                sound.sample_rate, sound.pts = AUDIO_RATE, audio_pts
                out.mux(audio.encode(sound))
                audio_pts += chunk
        out.mux(video.encode())
        out.mux(audio.encode())


def make_sample_clip(path: Path = HERE / "sample.mp4") -> Path:
    """The committed 6 s, 960x540, 25 fps H.264 + AAC sample."""
    _write(Path(path), 6.0, (960, 540), 25, _sample_pose, {"crf": "20", "preset": "slow"})
    return Path(path)


def make_benchmark_clip(
    path: Path, seconds: float, size: tuple[int, int] = (1280, 720), fps: int = 25, gop: int | None = None
) -> Path:
    """A clip of any length with one moving face and AAC audio, for benchmarks (made on the fly).
    ``gop``: a key frame every ``gop`` frames exactly (as a camera writes them), else x264's choice."""
    options = {"crf": "23", "preset": "veryfast"}
    if gop is not None:
        options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    _write(Path(path), seconds, size, fps, _benchmark_pose, options)
    return Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("output", nargs="?", type=Path, default=HERE / "sample.mp4")
    parser.add_argument("--seconds", type=float, help="make a benchmark clip of this length instead")
    parser.add_argument("--size", default="1280x720", help="benchmark clip size, WxH")
    parser.add_argument("--fps", type=int, default=25)
    args = parser.parse_args()
    if args.seconds is None:
        make_sample_clip(args.output)
    else:
        width, height = (int(v) for v in args.size.lower().split("x"))
        make_benchmark_clip(args.output, args.seconds, (width, height), args.fps)


if __name__ == "__main__":
    main()
