"""The sequential baseline of ``masquerade bench``: what roop does, in one thread.

Per frame: decode, run the full detector (no tracking), embed every face (roop's FaceAnalysis runs
the recognizer on every face), swap each face at batch 1, paste it back InsightFace-style on the
whole frame (warp the crop, a white mask and the difference map to frame size, erode and blur the
mask at frame size, blend in float, truncate), then encode. Our own stages do the crops and the
model calls, so the difference to the engine is the architecture, not the models. The watermark
and the content guard run too, as in a masquerade run, so both paths do the same safety work.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.config import EncodeOptions
from masquerade.geometry.align import invert
from masquerade.types import Image


class LoopResult(NamedTuple):
    """What one timed pass over a clip gives."""

    frames: int
    faces: int
    """Faces swapped, summed over the frames."""
    seconds: float
    """Wall time from opening the input to closing the output."""
    cpu_seconds: float
    """CPU time of the whole process (all threads) over the same span."""
    stage_ms: dict[str, float] | None = None
    """The engine's per-stage milliseconds per frame (None for the baseline)."""


def paste_full_frame(frame: Image, crop: NDArray[np.floating], affine: NDArray[np.float64]) -> Image:
    """InsightFace's inswapper paste-back: every warp, erosion and blur at full frame size."""
    h, w = frame.shape[:2]
    size = crop.shape[0]
    im = invert(affine)
    fake_crop = np.clip(crop, 0, 255).astype(np.uint8)
    aligned = cv2.warpAffine(frame, affine, (size, size), borderValue=0.0)
    diff = np.abs(fake_crop.astype(np.float32) - aligned.astype(np.float32)).mean(axis=2)
    diff[:2, :], diff[-2:, :], diff[:, :2], diff[:, -2:] = 0, 0, 0, 0
    fake = cv2.warpAffine(fake_crop, im, (w, h), borderValue=0.0)
    white = cv2.warpAffine(np.full((size, size), 255, np.float32), im, (w, h), borderValue=0.0)
    diff = cv2.warpAffine(diff, im, (w, h), borderValue=0.0)
    white[white > 20] = 255
    diff = np.where(diff < 10, 0, 255).astype(np.float32)
    ys, xs = np.nonzero(white == 255)
    if len(ys) == 0:
        return frame.copy()
    mask_size = int(np.sqrt((ys.max() - ys.min()) * (xs.max() - xs.min())))
    k = max(mask_size // 10, 10)
    mask = cv2.erode(white, np.ones((k, k), np.uint8), iterations=1)
    diff = cv2.dilate(diff, np.ones((2, 2), np.uint8), iterations=1)
    k = max(mask_size // 20, 5)
    mask = cv2.GaussianBlur(mask, (2 * k + 1, 2 * k + 1), 0)
    cv2.GaussianBlur(diff, (11, 11), 0)  # computed (and unused) by InsightFace too
    mask = (mask / 255.0)[..., None]
    return (mask * fake + (1 - mask) * frame.astype(np.float32)).astype(np.uint8)


def run_embedded_baseline(pipeline: Any, prepared: Any, clip: Path, output: Path) -> LoopResult:
    """Embedded stages, sequentially: full mesh detection every frame, swap, watermark, encode.

    Returns (frames, faces swapped, seconds). The mesh swapper pastes on its own region of interest
    (it has no separate crop), so only detection and threading differ from the engine here.
    """
    stages, watermark = pipeline._stages, pipeline.watermark
    guards: dict[float, Any] = {}

    def per_frame(ctx: Any, fps: float) -> int:
        image = ctx.image
        faces = stages.analyser.detect(image)
        ctx.selected = faces
        (guards.get(fps) or guards.setdefault(fps, pipeline.guard.video(fps))).check(ctx)
        for face in faces:
            image = stages.swapper.swap(image, face, prepared._swapper_input)
        ctx.image = watermark(image)
        return len(faces)

    return _loop(clip, output, per_frame, None)


def run_neural_baseline(
    pipeline: Any, prepared: Any, clip: Path, output: Path, recognizer: Any, frames: int | None
) -> LoopResult:
    """Neural stages the roop way: detect + embed every face every frame, batch 1, full-frame paste."""
    stages, watermark = pipeline._stages, pipeline.watermark
    swapper, enhancer = stages.swapper, stages.enhancer
    latent = prepared._swapper_input.latent
    guards: dict[float, Any] = {}

    def per_frame(ctx: Any, fps: float) -> int:
        image = ctx.image
        faces = stages.analyser.detect(image)
        ctx.selected = faces
        (guards.get(fps) or guards.setdefault(fps, pipeline.guard.video(fps))).check(ctx)
        if faces:
            recognizer.embed_many(image, faces)
        for face in faces:
            crops, affines = swapper.crops(image, [face])
            image = paste_full_frame(image, swapper.swap_crops(crops, latent)[0], affines[0])
            if enhancer is not None:
                crops, affines = enhancer.crops(image, [face])
                image = paste_full_frame(image, enhancer.enhance_crops(crops)[0], affines[0])
        ctx.image = watermark(image)
        return len(faces)

    return _loop(clip, output, per_frame, frames)


def _loop(clip: Path, output: Path, per_frame: Any, limit: int | None) -> LoopResult:
    from masquerade.media.reader import VideoReader
    from masquerade.media.writer import VideoWriter

    count = faces = 0
    started, cpu = time.perf_counter(), time.process_time()
    with VideoReader(clip) as reader:
        fps = float(reader.info.fps) if reader.info.fps else 25.0
        with VideoWriter(output, reader, EncodeOptions()) as writer:
            for ctx in reader.frames():
                if limit is not None and count >= limit:
                    break
                faces += per_frame(ctx, fps)
                writer.write(ctx)
                count += 1
    return LoopResult(count, faces, time.perf_counter() - started, time.process_time() - cpu)
