"""Invisible watermark carried by every output image and video frame, and its reader.

Design: a keyed spread-spectrum pattern on luma, tiled so that it survives crops and re-scaling. We
measured RivaGAN's ONNX models (``benchmarks/bench_watermark.py --rivagan``) on the frame resized to
256 x 256: about as robust on these transforms, but 270-650 ms per 720p frame to embed on 2 shared
cores against 0.3-0.8 ms here, 4-10 times the whole frame budget, so it could not mark every frame.

- The pattern is a 32 x 32-cell tile of +-1 chips: 304 sync chips and 72 x 10 data chips carrying the
  Golay-coded payload (``masquerade.provenance.wmcode``). The image is covered by tiles whose cell size is
  ``min(H, W) / 128`` pixels, so the pattern scales with the image: a 50 % downscale leaves it in place
  relative to the picture. Embedding adds the bilinearly up-sampled tile, less what is smoother than the
  reader's high-pass (invisible to the reader, visible to us as mottling), to B, G and R alike (a luma
  change). Its strength follows the picture (perceptual masking): about 1 grey level RMS on flat areas,
  where a fixed noise texture shows, up to 4 on textured ones, which hide it; the mean stays within
  PSNR 40.5 dB. The full-size pattern is computed once per frame size; a frame costs a texture map on a
  ~180 px plane and a few uint8 OpenCV passes (about 2 ms at 720p).
- Reading whitens luma (high-pass, divided by the local variance), then for each candidate zoom factor
  (a crop of up to ~15 % enlarges the cells relative to the picture) resamples it to 2 px per cell, folds
  it modulo the tile (averaging every tile in the picture) and finds the tile's offset by FFT correlation
  with the sync chips and the magic's chips (identical in every masquerade payload). The data chips at
  that offset give 72 soft bits, decoded by maximum likelihood. A reading is ``found`` when that
  correlation peak is beyond anything unmarked images give (threshold measured); the payload and key id
  come from the decoded bits (None if they cannot be read).
- Video: ``vote`` combines per-frame readings.

Limits: the reader searches zoom factors 0.97-1.17, so crops must keep at least ~86 % of the short side;
rotation, flips and aspect-ratio changes are not searched. See the benchmark for measured rates.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.errors import MediaError
from masquerade.provenance import wmcode
from masquerade.types import Image

PAYLOAD_BITS: int = wmcode.PAYLOAD_BITS
KEY_ID: int = 1
"""Key / format version id carried in the payload's low 8 bits."""

_CELLS = 128  # cells across the image's short side
_TILE = 32  # cells per tile side
_SYNC_CHIPS = _TILE * _TILE - wmcode.CODED_BITS * 10
_PATTERN_SEED = 0x6D61_7371  # the pattern key: fixed, so any reader can read any masquerade output
# Perceptual masking: chip amplitude (grey levels) = _FLOOR + _GAIN * (texture - _KNEE), at most _CAP.
# The reader weights flat areas most and H.264 erases weak marks there, so the floor is a compromise:
# 1.0 left 77-81 % of frames readable after H.264 CRF 28 in our trials, 1.5 leaves all of them.
_FLOOR, _KNEE, _GAIN, _CAP = 1.5, 0.5, 2.0, 6.0
_MASK_SHORT = 180  # short side of the plane the texture map is computed on
_HP_MASK, _STD_WIN, _ERODE, _SMOOTH = 1.0, 5, 3, 1.5  # high-pass, texture window, edge erosion, smoothing
_LEVEL_STEPS = 31  # strength map quantisation (uint8 steps per grey level); 31 * _CAP < 256
_PATTERN_HP = 1.5  # cells: sigma of the low-pass removed from the embedded pattern
_UNIT_MAX = 1.5  # the high-passed unit pattern's range stored in the uint8 planes
_MAX_MSE = 255.0**2 / 10 ** (40.5 / 10)  # keep PSNR >= 40.5 dB
_DET = 2  # detection pixels per cell
_DET_TILE = _TILE * _DET
_ZOOMS = np.exp(np.arange(np.log(0.97), np.log(1.17), 0.003))  # apparent cell zoom searched by the reader
_SHAPES_KEPT = 2  # a 4K pattern pair is 50 MB
_HP_SIGMA = 2.0  # detection-pixel scale of the whitening high-pass
_NORM_SIGMA = 3.0  # and of the local variance it is divided by
# Correlation-peak z-scores (sync + magic chips, best over zooms and offsets): unmarked frames give 4.35
# median, 5.13 at the 99th percentile and 5.6 at most over 2,357 measured (photos, their crops, resizes,
# JPEG, H.264, and synthetic checkers, stripes, text, noise); a marked 720p frame after H.264 CRF 28 gives
# 13 or more.
_PRESENCE_Z = 6.0
_NOISE_Z, _CLEAR_Z = 4.5, 12.0  # confidence 0 and 1


@dataclass(frozen=True)
class WatermarkReading:
    found: bool
    payload: int | None
    key_id: int | None
    confidence: float
    """0..1: the strength of the correlation peak: 0.2 at the decision threshold, at most 0.15 measured on
    unmarked images, 1 for any clear read (a 720p frame after H.264 CRF 28). A found reading may have no
    payload when the mark is certain but its key id unreadable."""


def _layout() -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    """Chip signs (tile) and, per cell, -1 for sync or the coded-bit index it carries."""
    rng = np.random.default_rng(_PATTERN_SEED)
    signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=_TILE * _TILE)
    owner = np.full(_TILE * _TILE, -1, dtype=np.int64)
    cells = rng.permutation(_TILE * _TILE)
    owner[cells[_SYNC_CHIPS:]] = np.arange(wmcode.CODED_BITS * 10) % wmcode.CODED_BITS
    return signs.reshape(_TILE, _TILE), owner.reshape(_TILE, _TILE)


def _tile(key_id: int) -> NDArray[np.float32]:
    """The +-1 tile carrying ``key_id``'s payload."""
    signs, owner = _layout()
    bits = wmcode.encode(wmcode.make_payload(key_id))
    values = np.where(owner < 0, 1.0, bits[np.maximum(owner, 0)]).astype(np.float32)
    return signs * values


def _check_image(image: Image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = getattr(image, "shape", type(image).__name__)
        raise MediaError(f"the watermark needs a BGR uint8 image of shape (H, W, 3), got {got}")


class WatermarkEmbedder:
    """Adds the watermark to images. Build once per run; the full-size pattern is cached per frame size.

    The pattern's strength follows the picture (perceptual masking): it is weak on flat areas (a plain
    backdrop, a dark suit), where a fixed noise texture would show, and stronger on textured ones, which
    hide it. Works on any size. Measured on the sample photos, the mark reads back from 64 px on the short
    side when stored losslessly and from 96 px after JPEG 75 (a 50 % downscale needs twice that). Smaller
    images still get the (aliased) pattern, which then may not read back.
    """

    def __init__(self, key_id: int = KEY_ID) -> None:
        self.key_id = key_id
        self.payload = wmcode.make_payload(key_id)
        self._tile = _tile(key_id)
        self._patterns: OrderedDict[tuple[int, int], tuple[Image, Image, float]] = OrderedDict()
        self._lock = threading.Lock()  # the pattern cache may be shared by frame workers

    def pattern(self, height: int, width: int) -> NDArray[np.float32]:
        """The unit (+-1 per chip, bilinearly up-sampled) pattern for an image of this size."""
        cell = min(height, width) / _CELLS
        rows, cols = max(1, round(height / cell)), max(1, round(width / cell))
        reps = (-(-rows // _TILE), -(-cols // _TILE))
        work = np.tile(self._tile, reps)[:rows, :cols]
        unit = cv2.resize(work, (width, height), interpolation=cv2.INTER_LINEAR)
        if _PATTERN_HP > 0:
            # The reader high-passes at about one cell: what is smoother is invisible to it but visible to us.
            unit -= cv2.GaussianBlur(unit, (0, 0), _PATTERN_HP * cell)
        return unit

    def strength(self, image: Image) -> NDArray[np.float32]:
        """Chip amplitude (grey levels) the image would get, on a plane ~180 px on its short side."""
        _check_image(image)
        return _strength(image, self._planes(image.shape[0], image.shape[1])[2])

    def _planes(self, height: int, width: int) -> tuple[Image, Image, float]:
        key = (height, width)
        with self._lock:
            if key in self._patterns:
                self._patterns.move_to_end(key)
                return self._patterns[key]
            unit = self.pattern(height, width)
            # Positive and negative parts as uint8 (255 = one chip) so that scaling by the strength map and
            # embedding are saturating OpenCV operations on uint8 planes.
            pos = np.rint(np.clip(unit, 0, _UNIT_MAX) * (255 / _UNIT_MAX)).astype(np.uint8)
            neg = np.rint(np.clip(-unit, 0, _UNIT_MAX) * (255 / _UNIT_MAX)).astype(np.uint8)
            self._patterns[key] = (pos, neg, float(np.mean(unit * unit)))
            if len(self._patterns) > _SHAPES_KEPT:
                self._patterns.popitem(last=False)
            return self._patterns[key]

    def __call__(self, image: Image) -> Image:
        """A new, watermarked copy of ``image`` (BGR uint8)."""
        _check_image(image)
        h, w = image.shape[:2]
        pos, neg, power = self._planes(h, w)
        small = np.rint(_strength(image, power) * _LEVEL_STEPS).astype(np.uint8)
        level = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        scale = _UNIT_MAX / (255 * _LEVEL_STEPS)
        add = cv2.cvtColor(cv2.multiply(pos, level, scale=scale), cv2.COLOR_GRAY2BGR)
        sub = cv2.cvtColor(cv2.multiply(neg, level, scale=scale), cv2.COLOR_GRAY2BGR)
        out = cv2.add(image, add)
        return cv2.subtract(out, sub, dst=out)


def _strength(image: Image, unit_power: float) -> NDArray[np.float32]:
    """Per-pixel chip amplitude (grey levels) on a small plane, from the luma texture around each pixel.

    Local deviation of high-passed luma on a plane about ``_MASK_SHORT`` px on its short side (1.4 px per
    cell, so it measures texture at the pattern's own scale), eroded so that the flat side of an edge stays
    weak, then mapped to ``_FLOOR + _GAIN * (std - _KNEE)`` within ``[_FLOOR, _CAP]`` and smoothed. If the
    whole picture is busy, the map is scaled down to keep the mean squared change (PSNR) within ``_MAX_MSE``.
    """
    h, w = image.shape[:2]
    f = min(1.0, _MASK_SHORT / min(h, w))
    size = (max(1, round(w * f)), max(1, round(h * f)))
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    small = cv2.resize(luma, size, interpolation=cv2.INTER_AREA).astype(np.float32)
    # Texture, not slope: a smooth ramp (a blurred backdrop) hides nothing, so measure the high-passed luma.
    hp = small - cv2.GaussianBlur(small, (0, 0), _HP_MASK)
    std = np.sqrt(np.maximum(cv2.blur(hp * hp, (_STD_WIN, _STD_WIN)), 0.0))
    std = cv2.erode(std, np.ones((_ERODE, _ERODE), np.uint8))
    # Masking: codec grain below the knee hides nothing; texture above it hides a proportional amplitude.
    amp = np.minimum(_FLOOR + _GAIN * np.maximum(std - _KNEE, 0.0), _CAP)
    amp = cv2.GaussianBlur(amp, (0, 0), _SMOOTH)
    mse = float(np.mean(amp * amp)) * unit_power
    if mse > _MAX_MSE:
        # Scale down what the texture added, not the floor (flat areas carry most of what the reader uses):
        # solve mean((floor + k * excess)^2) * unit_power = _MAX_MSE for k.
        excess = amp - _FLOOR
        a, b = float(np.mean(excess * excess)), 2 * _FLOOR * float(np.mean(excess))
        c = _FLOOR * _FLOOR - _MAX_MSE / unit_power
        if c >= 0:
            return np.full_like(amp, np.sqrt(_MAX_MSE / unit_power))
        amp = _FLOOR + excess * ((-b + np.sqrt(b * b - 4 * a * c)) / (2 * a))
    return amp


def _wrap_blur(tile: NDArray[np.float32], sigma: float) -> NDArray[np.float32]:
    pad = int(np.ceil(3 * sigma))
    padded = np.pad(tile, pad, mode="wrap")
    return cv2.GaussianBlur(padded, (0, 0), sigma)[pad:-pad, pad:-pad]


def _highpass(plane: NDArray[np.float32]) -> NDArray[np.float32]:
    return plane - cv2.GaussianBlur(plane, (0, 0), _HP_SIGMA)


@lru_cache(maxsize=1)
def _references() -> tuple[NDArray[np.complex64], NDArray[np.float32]]:
    """Conjugate FFT of the sync reference and the (72, tile*tile) data references, at detection scale."""
    signs, owner = _layout()

    def upsampled(tile: NDArray[np.float32]) -> NDArray[np.float32]:
        padded = np.pad(tile, 1, mode="wrap")
        big = cv2.resize(padded, None, fx=_DET, fy=_DET, interpolation=cv2.INTER_LINEAR)
        ref = big[_DET:-_DET, _DET:-_DET]
        return ref - _wrap_blur(ref, _HP_SIGMA)

    # Synchronise on the sync chips and the magic's chips (the same in every masquerade payload): 2.6 times
    # the chips of the sync alone.
    magic = wmcode.magic_bits()
    known = np.where(
        owner < 0, 1.0, np.where(owner < magic.size, magic[np.minimum(owner, magic.size - 1)], 0.0)
    )
    sync = upsampled((signs * known).astype(np.float32))
    data = np.stack(
        [
            upsampled(np.where(owner == k, signs, 0.0).astype(np.float32)).ravel()
            for k in range(wmcode.CODED_BITS)
        ]
    )
    return np.conj(np.fft.rfft2(sync)).astype(np.complex64), data.astype(np.float32)


def _fold(plane: NDArray[np.float32]) -> NDArray[np.float32]:
    """Sum of all tile-sized blocks of the plane (zero-padded to whole tiles)."""
    h, w = plane.shape
    ph, pw = -(-h // _DET_TILE) * _DET_TILE, -(-w // _DET_TILE) * _DET_TILE
    padded = np.zeros((ph, pw), dtype=np.float32)
    padded[:h, :w] = plane
    return padded.reshape(ph // _DET_TILE, _DET_TILE, pw // _DET_TILE, _DET_TILE).sum(axis=(0, 2))


def _whitened(image: Image) -> NDArray[np.float32]:
    """Luma at about the largest detection scale, high-passed and contrast-normalised."""
    luma = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    h, w = luma.shape
    short = _CELLS * _DET / _ZOOMS[0]
    f = short / min(h, w)
    interp = cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR
    base = cv2.resize(luma, (max(1, round(w * f)), max(1, round(h * f))), interpolation=interp)
    hp = _highpass(base)
    # Dividing by the local variance (not the deviation) weights each sample by its inverse noise power,
    # which measured 40 % more soft-bit SNR after H.264 than deviation normalisation.
    return hp / (cv2.GaussianBlur(hp * hp, (0, 0), _NORM_SIGMA) + 0.5)


def _align(white: NDArray[np.float32]) -> tuple[float, NDArray[np.float32]]:
    """The best (z-score, folded tile rolled to the pattern's origin) over the searched zoom factors."""
    sync_conj, _ = _references()
    h, w = white.shape
    best: tuple[float, NDArray[np.float32]] = (0.0, np.zeros((_DET_TILE, _DET_TILE), np.float32))
    for zoom in _ZOOMS:
        f = (_CELLS * _DET / zoom) / min(h, w)
        size = (max(1, round(w * f)), max(1, round(h * f)))
        fold = _fold(cv2.resize(white, size, interpolation=cv2.INTER_LINEAR))
        corr = np.fft.irfft2(np.fft.rfft2(fold) * sync_conj, s=fold.shape)
        peak = int(corr.argmax())
        std = float(corr.std())
        z = (float(corr.flat[peak]) - float(corr.mean())) / std if std > 0 else 0.0
        if z > best[0]:
            dy, dx = divmod(peak, _DET_TILE)
            best = (z, np.roll(fold, (-dy, -dx), axis=(0, 1)))
    return best


def read_watermark(image: Image) -> WatermarkReading:
    """Look for a masquerade watermark. Works after re-encoding, resizing, cropping and metadata loss."""
    _check_image(image)
    _, data = _references()
    z, aligned = _align(_whitened(image))
    confidence = float(np.clip((z - _NOISE_Z) / (_CLEAR_Z - _NOISE_Z), 0.0, 1.0))
    if z < _PRESENCE_Z:
        return WatermarkReading(found=False, payload=None, key_id=None, confidence=confidence)
    # The alignment was chosen for the magic's chips, so a decoded magic adds no evidence of its own (it
    # passed on unmarked frames): presence rests on z alone, the decode only names the key.
    soft = data @ aligned.ravel()
    payload, _ = wmcode.decode(soft)
    if payload is None or payload >> 8 != wmcode.MAGIC:
        payload = wmcode.decode_key(soft)
    key_id = None if payload is None else payload & 0xFF
    return WatermarkReading(found=True, payload=payload, key_id=key_id, confidence=confidence)


def vote(readings: Sequence[WatermarkReading]) -> WatermarkReading:
    """Decide for a whole video from its frames' readings.

    Found when the mark is read on at least 10 % of the frames (and at least one): a stray false frame in
    a long clip cannot decide it alone, and a video only partly made by masquerade is still flagged. The
    payload is the one most frames read, if it was read more than twice as often as any other (else None).
    ``confidence`` is the share of frames on which the mark was found.
    """
    found = [r for r in readings if r.found]
    share = len(found) / len(readings) if readings else 0.0
    if not found or len(found) < 0.1 * len(readings):
        return WatermarkReading(found=False, payload=None, key_id=None, confidence=share)
    ranked = Counter(r.payload for r in found if r.payload is not None).most_common(2)
    payload = ranked[0][0] if ranked else None
    if len(ranked) > 1 and ranked[0][1] <= 2 * ranked[1][1]:
        payload = None
    key_id = None if payload is None else payload & 0xFF
    return WatermarkReading(found=True, payload=payload, key_id=key_id, confidence=share)
