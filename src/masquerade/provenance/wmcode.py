"""Payload coding for the invisible watermark: extended Golay(24, 12) with soft maximum-likelihood decoding.

The 32-bit payload (a 24-bit masquerade magic plus an 8-bit key/version id) and a 4-bit CRC make 36
information bits, coded as three Golay words (72 coded bits). Golay(24, 12) has minimum distance 8; with
only 4096 codewords we decode each word by exhaustive soft correlation, which is the maximum-likelihood
decision for the soft bit values the detector measures (better than hard-decision syndrome decoding).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from numpy.typing import NDArray

MAGIC = 0x4D5153
"""24 bits, "MQS": marks an image as made by masquerade."""
PAYLOAD_BITS = 32
KEY_ID = 1
"""Key / format version id carried in the payload's low 8 bits by every output."""
SOFT_BINDING_ALG = "masquerade.spread-spectrum.1"
"""The watermark's name in a C2PA soft-binding assertion (its value: the 32-bit payload, big-endian)."""
CODED_BITS = 72
_CRC_BITS = 4

# Parity part of the extended Golay(24, 12) generator: rows 0-10 are cyclic shifts of the quadratic-residue
# row, row 11 is all ones except the last (MacWilliams & Sloane). The test checks minimum distance 8.
_B_ROW = [1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0]


@lru_cache(maxsize=1)
def _golay_codebook() -> NDArray[np.float32]:
    """All 4096 codewords as +-1 (bit 1 -> +1), row i is the word for the 12-bit message i (MSB first)."""
    b = np.zeros((12, 12), dtype=np.uint8)
    for i in range(11):
        b[i, :11] = np.roll(_B_ROW, -i)
        b[i, 11] = 1
    b[11, :11] = 1
    gen = np.concatenate([np.eye(12, dtype=np.uint8), b], axis=1)
    msgs = ((np.arange(4096)[:, None] >> np.arange(11, -1, -1)) & 1).astype(np.uint8)
    words = (msgs @ gen) % 2
    return (words.astype(np.float32) * 2 - 1).astype(np.float32)


def golay_min_distance() -> int:
    """Minimum Hamming weight of a non-zero codeword (8 for a correct extended Golay code)."""
    words = _golay_codebook()[1:] > 0
    return int(words.sum(axis=1).min())


def _crc4(value: int, nbits: int) -> int:
    """CRC-4/ITU (x^4 + x + 1) of the ``nbits`` low bits of ``value``, MSB first."""
    reg = 0
    for i in range(nbits - 1, -1, -1):
        bit = ((value >> i) & 1) ^ (reg >> 3)
        reg = ((reg << 1) & 0xF) ^ (0x3 if bit else 0)
    return reg


def make_payload(key_id: int) -> int:
    """The 32-bit payload for a key/version id (0..255)."""
    if not 0 <= key_id <= 0xFF:
        raise ValueError(f"key_id must be in 0..255, got {key_id}")
    return (MAGIC << 8) | key_id


def encode(payload: int) -> NDArray[np.float32]:
    """72 coded bits of a 32-bit payload, as +-1 values."""
    info = (payload << _CRC_BITS) | _crc4(payload, PAYLOAD_BITS)
    book = _golay_codebook()
    words = [(info >> shift) & 0xFFF for shift in (24, 12, 0)]
    return np.concatenate([book[w] for w in words])


def magic_bits() -> NDArray[np.float32]:
    """The first 48 coded bits, identical in every masquerade payload (the magic's two Golay words)."""
    return encode(make_payload(0))[:48]


def decode_key(soft: NDArray[np.floating]) -> int | None:
    """The payload read from the last Golay word alone, the magic taken as given; None if its CRC fails.

    Only meaningful once the magic's presence is established otherwise: noise passes the 4-bit CRC 1 time
    in 16.
    """
    soft = np.asarray(soft, dtype=np.float32).reshape(3, 24)
    info = int((_golay_codebook() @ soft[2]).argmax())
    payload = (MAGIC << 8) | (info >> _CRC_BITS)
    return payload if _crc4(payload, PAYLOAD_BITS) == info & 0xF else None


def decode(soft: NDArray[np.floating]) -> tuple[int | None, float]:
    """Soft-decode 72 bit values (positive = 1). Returns (payload or None if the CRC fails, agreement).

    ``agreement`` is the normalised correlation between the soft values and the decoded codewords: 1.0 for
    a clean read, 0.65-0.75 on unmarked images (the best of 4096 candidates per word fits noise well).
    """
    soft = np.asarray(soft, dtype=np.float32).reshape(3, 24)
    book = _golay_codebook()
    scores = soft @ book.T  # (3, 4096)
    best = scores.argmax(axis=1)
    info = (int(best[0]) << 24) | (int(best[1]) << 12) | int(best[2])
    norm = float(np.linalg.norm(soft)) * float(np.sqrt(soft.size))
    agreement = float(scores[np.arange(3), best].sum()) / norm if norm > 0 else 0.0
    payload, crc = info >> _CRC_BITS, info & 0xF
    return (payload if _crc4(payload, PAYLOAD_BITS) == crc else None), agreement
