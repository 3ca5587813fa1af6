"""Calibration inputs for ``--precision int8``: the bundled faces, prepared by the stage that runs the model.

The four bundled public-domain face crops (``assets/calibration``) each come in six variants (as
they are, mirrored, turned by +-10 degrees, darker, brighter, softer, lower in contrast), so the
activation ranges cover ordinary lighting and pose. The first four variants of every face calibrate;
the last two are held out for the quality gate. A swapper's target is always paired with another
person's identity, as in a real swap.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from importlib import resources
from typing import TYPE_CHECKING

import cv2
import numpy as np

from masquerade._stages.paste import output_to_crop
from masquerade.geometry.align import crop_faces
from masquerade.models.quantize import CalibrationSet, Feeds
from masquerade.types import Face, Image

if TYPE_CHECKING:
    from masquerade._stages.enhance import FaceEnhancer
    from masquerade._stages.swap_neural import NeuralSwapper

CALIBRATION_VARIANTS = 4
"""Variants of each face used to calibrate; the rest are held out."""

Variant = Callable[[Image, np.ndarray], tuple[Image, np.ndarray]]


def _as_is(image: Image, kps: np.ndarray) -> tuple[Image, np.ndarray]:
    return image, kps


def _mirrored(image: Image, kps: np.ndarray) -> tuple[Image, np.ndarray]:
    flipped = kps.copy()
    flipped[:, 0] = image.shape[1] - 1 - flipped[:, 0]
    return np.ascontiguousarray(image[:, ::-1]), flipped[[1, 0, 2, 4, 3]]  # left and right swap roles


def _turned(degrees: float, gain: float) -> Variant:
    def variant(image: Image, kps: np.ndarray) -> tuple[Image, np.ndarray]:
        h, w = image.shape[:2]
        affine = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), degrees, 1.0)
        turned = cv2.warpAffine(image, affine, (w, h), borderMode=cv2.BORDER_REPLICATE)
        points = kps @ affine[:, :2].T + affine[:, 2]
        return cv2.convertScaleAbs(turned, alpha=gain), points

    return variant


def _softer_mirrored(image: Image, kps: np.ndarray) -> tuple[Image, np.ndarray]:
    return _mirrored(cv2.GaussianBlur(image, (0, 0), 1.5), kps)


def _low_contrast(image: Image, kps: np.ndarray) -> tuple[Image, np.ndarray]:
    return cv2.convertScaleAbs(image, alpha=0.7, beta=40), kps


VARIANTS: tuple[Variant, ...] = (_as_is, _mirrored, _turned(10.0, 0.8), _turned(-10.0, 1.2),
                                 _softer_mirrored, _low_contrast)


def bundled_faces() -> list[tuple[Image, Face]]:
    """The bundled calibration crops with their five key points."""
    folder = resources.files("masquerade").joinpath("assets", "calibration")
    listing = json.loads(folder.joinpath("faces.json").read_text(encoding="utf-8"))
    faces = []
    for entry in listing["faces"]:
        data = np.frombuffer(folder.joinpath(entry["file"]).read_bytes(), np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        kps = np.asarray(entry["kps5"], np.float32)
        faces.append((image, _face(kps)))
    return faces


def _face(kps: np.ndarray) -> Face:
    lo, hi = kps.min(axis=0), kps.max(axis=0)
    return Face(bbox=np.concatenate([lo, hi]), kps5=kps)


def _variants(faces: list[tuple[Image, Face]]) -> list[list[tuple[Image, Face]]]:
    """variants[v][i]: variant v of face i."""
    out = []
    for variant in VARIANTS:
        row = []
        for image, face in faces:
            changed, kps = variant(image, face.kps5.astype(np.float64))
            row.append((changed, _face(kps.astype(np.float32))))
        out.append(row)
    return out


def _split(feeds: list[Feeds], per_variant: int) -> tuple[list[Feeds], list[Feeds]]:
    cut = CALIBRATION_VARIANTS * per_variant
    return feeds[:cut], feeds[cut:]


def swapper_calibration(swapper: NeuralSwapper) -> CalibrationSet:
    """Target crops of every variant, each with another bundled person's identity as the source."""
    faces = bundled_faces()
    latents = [swapper.prepare([pair]).latent for pair in faces]
    feeds: list[Feeds] = []
    for v, row in enumerate(_variants(faces)):
        for i, (image, face) in enumerate(row):
            crops, _ = crop_faces(image, [face.kps5], swapper.spec.template or (), swapper.size)
            other = (i + 1 + v % (len(faces) - 1)) % len(faces)
            feeds.append(swapper.model_feeds(swapper.preprocess(crops), latents[other]))
    calibration, holdout = _split(feeds, len(faces))
    return CalibrationSet(calibration, holdout, swapper.output_name, _to_pixels(*swapper.output_range))


def enhancer_calibration(enhancer: FaceEnhancer) -> CalibrationSet:
    """The enhancer's inputs for every variant's crop."""
    faces = bundled_faces()
    feeds: list[Feeds] = []
    for row in _variants(faces):
        for image, face in row:
            crops, _ = enhancer.crops(image, [face])
            feeds.extend(enhancer.feeds(crops))
    calibration, holdout = _split(feeds, len(faces))
    return CalibrationSet(calibration, holdout, enhancer.output_name, _to_pixels(*enhancer.output_range))


def _to_pixels(lo: float, span: float) -> Callable[[np.ndarray], np.ndarray]:
    """The stage's output decoding, holding no reference to the stage (so its fp32 session can be
    freed while the int8 model is made)."""
    return functools.partial(output_to_crop, lo=lo, span=span)
