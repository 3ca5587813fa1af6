"""Synthetic benchmark clips: a real photo under a moving virtual camera, one face or four per frame.

The faces are real (a public-domain photo), so the detectors and the tracker do their normal work.
With four faces the frame is a 2 x 2 grid of cells, each its own camera path (different phase).
No audio: the benchmark measures the video path.
"""

from __future__ import annotations

import math
from fractions import Fraction
from importlib import resources
from pathlib import Path

import av
import cv2
import numpy as np

from masquerade.errors import UsageError
from masquerade.types import Image

DEFAULT_PHOTO = "obama2.jpg"
FACE_CENTRE = (370.0, 420.0)
"""Centre of the face in the bundled photo (``assets/bench/obama2.jpg``, a copy of examples/obama2.jpg)."""
SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def parse_size(text: str) -> tuple[int, int]:
    """``720p``/``1080p``/``360p`` or ``WxH`` -> (width, height), both even."""
    if text in SIZES:
        return SIZES[text]
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UsageError(f"frame size {text!r} is not 720p, 1080p or WIDTHxHEIGHT") from None
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise UsageError(f"frame size {text!r} must be even and at least 64x64")
    return width, height


def examples_photo() -> Path:
    """The bundled photo the benchmark films (part of the installed package: no checkout needed)."""
    return Path(str(resources.files("masquerade").joinpath("assets", "bench", DEFAULT_PHOTO)))


def _canvas(photo: Image) -> tuple[Image, tuple[float, float]]:
    """The photo on a wide, blurred copy of its top strip, so the camera never shows a mirrored face."""
    height, width = photo.shape[:2]
    canvas_width = int(height * 2.2)
    strip = photo[: height // 8]
    canvas = (cv2.GaussianBlur(cv2.resize(strip, (canvas_width, height)), (0, 0), 25) * 0.6).astype(np.uint8)
    left = (canvas_width - width) // 2
    canvas[:, left : left + width] = photo
    return canvas, (FACE_CENTRE[0] + left, FACE_CENTRE[1])


def _cell(canvas: Image, face: tuple[float, float], t: float, size: tuple[int, int]) -> Image:
    """One camera view at time ``t``: the face wanders slowly, the camera breathes in and out, rolls a bit."""
    width, height = size
    fx = 0.5 + 0.18 * math.sin(2 * math.pi * t / 9.0)
    fy = 0.45 + 0.06 * math.sin(2 * math.pi * t / 5.0)
    crop_width = 1200 + 300 * math.sin(2 * math.pi * t / 13.0)
    matrix = cv2.getRotationMatrix2D(face, 4.0 * math.sin(2 * math.pi * t / 7.0), width / crop_width)
    matrix[:, 2] += (fx * width - face[0], fy * height - face[1])
    return cv2.warpAffine(canvas, matrix, size, flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)


def render_frame(
    canvas: Image, face: tuple[float, float], t: float, size: tuple[int, int], faces: int
) -> Image:
    """A frame with ``faces`` (1 or 4) faces at time ``t`` seconds."""
    if faces == 1:
        return _cell(canvas, face, t, size)
    if faces != 4:
        raise UsageError(f"benchmark clips have 1 or 4 faces per frame, not {faces}")
    width, height = size
    half = (width // 2, height // 2)
    frame = np.zeros((height, width, 3), np.uint8)
    for i in range(4):
        y, x = divmod(i, 2)
        frame[y * half[1] : (y + 1) * half[1], x * half[0] : (x + 1) * half[0]] = _cell(
            canvas, face, t + 2.3 * i, half
        )
    return frame


def write_clip(
    path: Path, frames: int, size: tuple[int, int], faces: int = 1, fps: int = 25, photo: Path | None = None
) -> Path:
    """Write an H.264 clip of ``frames`` frames (no audio) and return its path."""
    photo_path = Path(photo) if photo is not None else examples_photo()
    image = cv2.imread(str(photo_path), cv2.IMREAD_COLOR)
    if image is None:
        raise UsageError(f"cannot read the benchmark photo {photo_path} (give one with --photo)")
    canvas, face = _canvas(image)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps, options={"crf": "23", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, fps)
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(render_frame(canvas, face, index / fps, size, faces), "bgr24")
            frame.pts, frame.time_base = index, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return Path(path)
