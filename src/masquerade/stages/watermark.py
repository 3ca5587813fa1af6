"""Invisible watermark carried by every output image and video frame, and its reader.

Design: a keyed spread-spectrum pattern on luma, tiled so that it survives crops and re-scaling. We
measured RivaGAN's ONNX models (``benchmarks/bench_watermark.py --rivagan``) on the frame resized to
256 x 256: about as robust on these transforms, but 270-650 ms per 720p frame to embed on 2 shared
cores against 0.3-0.8 ms here, 4-10 times the whole frame budget, so it could not mark every frame.

- The pattern is a 32 x 32-cell tile of +-1 chips: 304 sync chips and 72 x 10 data chips carrying the
  Golay-coded payload (``masquerade.provenance.wmcode``). The image is covered by tiles whose cell size is
  ``min(H, W) / 128`` pixels, so the pattern scales with the image: a 50 % downscale leaves it in place
  relative to the picture. Embedding adds the bilinearly up-sampled tile, a few grey levels strong, to
  B, G and R alike (a luma change). The full-size pattern is computed once per frame size, so a video
  frame costs two saturating uint8 additions.
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
_STRENGTH = 3.4  # grey levels of one chip before interpolation (PSNR about 41 dB)
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

    Works on any size. Measured on the sample photos, the mark reads back from 64 px on the short side
    when stored losslessly and from 96 px after JPEG 75 (a 50 % downscale needs twice that). Smaller
    images still get the (aliased) pattern, which then may not read back.
    """

    def __init__(self, key_id: int = KEY_ID) -> None:
        self.key_id = key_id
        self.payload = wmcode.make_payload(key_id)
        self._tile = _tile(key_id)
        self._patterns: OrderedDict[tuple[int, int], tuple[Image, Image]] = OrderedDict()
        self._lock = threading.Lock()  # the pattern cache may be shared by frame workers

    def pattern(self, height: int, width: int) -> NDArray[np.float32]:
        """The luma offset added to an image of this size, in grey levels."""
        cell = min(height, width) / _CELLS
        rows, cols = max(1, round(height / cell)), max(1, round(width / cell))
        reps = (-(-rows // _TILE), -(-cols // _TILE))
        work = np.tile(self._tile, reps)[:rows, :cols]
        return cv2.resize(work * _STRENGTH, (width, height), interpolation=cv2.INTER_LINEAR)

    def _planes(self, height: int, width: int) -> tuple[Image, Image]:
        key = (height, width)
        with self._lock:
            if key in self._patterns:
                self._patterns.move_to_end(key)
                return self._patterns[key]
            offset = np.rint(self.pattern(height, width)).astype(np.int16)
            # Positive and negative parts as uint8 so that embedding is two saturating OpenCV additions.
            pos = np.repeat(np.clip(offset, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            neg = np.repeat(np.clip(-offset, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)
            self._patterns[key] = (pos, neg)
            if len(self._patterns) > _SHAPES_KEPT:
                self._patterns.popitem(last=False)
            return pos, neg

    def __call__(self, image: Image) -> Image:
        """A new, watermarked copy of ``image`` (BGR uint8)."""
        _check_image(image)
        pos, neg = self._planes(image.shape[0], image.shape[1])
        out = cv2.add(image, pos)
        return cv2.subtract(out, neg, dst=out)


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
