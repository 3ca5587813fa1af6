"""Blending helpers: masks, feathering, LAB colour transfer, relighting and ROI Poisson blending.

Colour work happens in CIE LAB on OpenCV's 8-bit scale (L * 2.55, a + 128, b + 128) held as float32
(:func:`to_lab` / :func:`from_lab`): the conversions go through OpenCV's fast 8-bit tables, and a change
of lightness stays a change of lightness instead of a shift of hue. Everything works on the smallest
rectangle that matters, so blending one face costs the same in a 720p frame as in a 4K one and pixels
outside that rectangle are never written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade.types import Image, Mask

BinaryMask = NDArray[np.uint8]
"""(H, W) uint8, 0 outside, 255 inside."""

Lab = NDArray[np.float32]
"""(H, W, 3) float32 CIE LAB on OpenCV's 8-bit scale."""

Rect = tuple[int, int, int, int]
"""x, y, width, height in pixels."""


# --- masks -------------------------------------------------------------------------------------------


def polygon_mask(
    shape: tuple[int, ...], polygons: Sequence[NDArray[np.floating]], grow: int = 0
) -> BinaryMask:
    """A 0/255 mask with the given polygons ((N, 2) points each, pixels) filled, grown by ``grow`` px."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    polys = [np.round(np.asarray(p, dtype=np.float64)[:, :2]).astype(np.int32) for p in polygons]
    if polys:
        cv2.fillPoly(mask, polys, 255)
        if grow > 0:  # a thick outline grows a polygon as a dilation would, at a fraction of the cost
            cv2.polylines(mask, polys, True, 255, thickness=2 * grow)
    return mask


def mask_rect(mask: BinaryMask, margin: int = 0) -> Rect | None:
    """Bounding rectangle of the mask's non-zero pixels grown by ``margin``, clipped; None if empty."""
    x, y, w, h = cv2.boundingRect(mask)
    if w == 0 or h == 0:
        return None
    height, width = mask.shape[:2]
    x0, y0 = max(x - margin, 0), max(y - margin, 0)
    x1, y1 = min(x + w + margin, width), min(y + h + margin, height)
    return x0, y0, x1 - x0, y1 - y0


def erode(mask: BinaryMask, pixels: int) -> BinaryMask:
    """Shrink a binary mask by ``pixels`` (Euclidean distance; pixels outside the array count as 0)."""
    if pixels <= 0:
        return mask
    return np.where(_inner_distance(mask) > pixels, 255, 0).astype(np.uint8)


def dilate(mask: BinaryMask, pixels: int) -> BinaryMask:
    """Grow a binary mask by ``pixels`` (Euclidean distance)."""
    if pixels <= 0:
        return mask
    outside = cv2.distanceTransform(np.where(mask > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 3)
    return np.where(outside <= pixels, 255, 0).astype(np.uint8)


def _inner_distance(mask: BinaryMask) -> NDArray[np.float32]:
    """Distance of each pixel to the nearest pixel outside the mask (the array's border included)."""
    padded = cv2.copyMakeBorder(
        np.where(mask > 0, 255, 0).astype(np.uint8), 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0
    )
    return cv2.distanceTransform(padded, cv2.DIST_L2, 3)[1:-1, 1:-1]


def feather(mask: BinaryMask, radius: float) -> Mask:
    """Soft [0, 1] mask rising from 0 at the binary mask's edge to 1 at ``radius`` pixels inside it.

    The ramp is a smoothstep of the distance to the edge, so it has no visible start or end, and it
    lies wholly inside the mask: a blend with it never touches a pixel outside the mask.
    """
    if radius < 1.0:
        return (mask > 0).astype(np.float32)
    t = np.clip(_inner_distance(mask) * (1.0 / float(radius)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def fade_out(mask: BinaryMask, gap: float, radius: float) -> Mask:
    """Soft [0, 1] weight that is 0 on the mask and up to ``gap`` px around it, then rises to 1 over
    ``radius`` px (smoothstep): multiplied into an alpha it keeps the masked pixels exactly as they are.
    """
    outside = cv2.distanceTransform(np.where(mask > 0, 0, 255).astype(np.uint8), cv2.DIST_L2, 3)
    t = np.clip((outside - float(gap)) * (1.0 / max(float(radius), 1e-3)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def fill_holes(mask: BinaryMask) -> BinaryMask:
    """The mask with every region that does not reach the array's border filled in."""
    outside = cv2.copyMakeBorder(mask, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0)
    cv2.floodFill(outside, None, (0, 0), 255)
    return mask | ~outside[1:-1, 1:-1]


def reachable_from_outside(bad: BinaryMask, region: BinaryMask) -> BinaryMask:
    """The part of ``bad`` inside ``region`` that connects to the outside of ``region`` through ``bad``.

    Hair and hats enter a face from its edge; shadows, nostrils or moles inside it do not.
    """
    passable = np.where((region == 0) | (bad > 0), 255, 0).astype(np.uint8)
    passable = cv2.copyMakeBorder(passable, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=255)
    cv2.floodFill(passable, None, (0, 0), 128)
    return np.where((passable[1:-1, 1:-1] == 128) & (region > 0), 255, 0).astype(np.uint8)


# --- colour --------------------------------------------------------------------------------------------


def to_lab(image: Image) -> Lab:
    """BGR uint8 -> LAB on OpenCV's 8-bit scale, as float32."""
    return cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)


def from_lab(lab: Lab) -> Image:
    """LAB on OpenCV's 8-bit scale -> BGR uint8 (values clipped to the 8-bit range first)."""
    return cv2.cvtColor(np.clip(lab + 0.5, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def colour_distance(
    lab: Lab, reference: BinaryMask, *, floor: tuple[float, float, float] = (25.0, 6.0, 6.0)
) -> NDArray[np.float32]:
    """Per pixel, how far its colour is from the reference region's, in robust units (1 = tolerance).

    Per LAB channel the tolerance is three robust standard deviations (1.4826 MAD) of the reference
    pixels, at least ``floor``; lightness gets a wide floor so shading is not mistaken for another
    material. Used to tell skin from hair and background.
    """
    samples = lab[reference > 0]
    if len(samples) < 8:
        return np.zeros(lab.shape[:2], np.float32)
    median = np.median(samples, axis=0)
    tolerance = np.maximum(3.0 * 1.4826 * np.median(np.abs(samples - median), axis=0), floor)
    z = (lab - median.astype(np.float32)) * (1.0 / tolerance).astype(np.float32)
    return np.sqrt(np.einsum("ijk,ijk->ij", z, z))


@dataclass(frozen=True)
class ColourGain:
    """A colour change that keeps black black and grey grey (see :func:`colour_match`).

    Lightness follows a power law through 0, ``L' = gain * L ** exponent``; chroma (a*, b* around
    grey, as one complex number ``z``) is multiplied by one complex factor: a turn of hue and a change
    of saturation. A feature less coloured than the skin (a brow, a lash line, a crease) stays less
    coloured; nothing is pushed across grey into the opposite hue, as an offset would.
    """

    exponent: float = 1.0
    gain: float = 1.0
    chroma: complex = 1.0 + 0.0j
    palest: float = 0.0
    """The reference skin's palest colour: a low quantile of its chroma over lightness along its
    hue, relative to its mean. :func:`recolour` lifts skin-like pixels that would come out paler."""

    def apply(self, lab: Lab) -> Lab:
        out = np.empty_like(lab, dtype=np.float32)
        lightness = np.maximum(lab[..., 0], 1.0)
        out[..., 0] = self.gain * (lightness if self.exponent == 1.0 else lightness**self.exponent)
        a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
        re, im = np.float32(self.chroma.real), np.float32(self.chroma.imag)
        out[..., 1] = a * re - b * im + 128.0
        out[..., 2] = a * im + b * re + 128.0
        return out


def colour_match(
    lab: Lab,
    mask: BinaryMask,
    reference: Lab,
    reference_mask: BinaryMask,
    *,
    contrast: tuple[float, float] = (1.0, 1.25),
    max_saturation: float = 2.5,
    max_turn: float = 45.0,
) -> ColourGain:
    """The :class:`ColourGain` that moves ``lab``'s colour under ``mask`` to ``reference``'s.

    Lightness: the mean is matched, and the spread of log L by an exponent within ``contrast`` (a
    multiplicative change is what another light does, and it keeps a black brow black where an
    offset would lift it to grey). Chroma: the mean (a*, b*) vector is turned and scaled onto the
    reference's, the scale within ``1 / max_saturation .. max_saturation`` and the turn within
    ``max_turn`` degrees, so a grey or noisy source is not blown up. The reference's palest skin is
    kept too (see :attr:`ColourGain.palest`): a source with redder cheeks and a paler forehead than
    a pale target would otherwise leave forehead patches greyer than any skin the target shows. The
    identity when either mask is empty.
    """
    if not np.any(mask) or not np.any(reference_mask):
        return ColourGain()
    pixels, ref = lab[mask > 0], reference[reference_mask > 0]
    log_s, log_r = np.log(np.maximum(pixels[:, 0], 1.0)), np.log(np.maximum(ref[:, 0], 1.0))
    spread_s, spread_r = float(log_s.std()), float(log_r.std())
    exponent = float(np.clip(spread_r / max(spread_s, 1e-3), *contrast)) if spread_s > 1e-3 else 1.0
    gain = float(ref[:, 0].mean() / max(float(np.mean(np.maximum(pixels[:, 0], 1.0) ** exponent)), 1e-6))
    z_s = complex(*(pixels[:, 1:].mean(axis=0) - 128.0))
    z_r = complex(*(ref[:, 1:].mean(axis=0) - 128.0))
    return ColourGain(exponent, gain, _chroma_factor(z_s, z_r, max_saturation, max_turn), _palest(ref))


def _palest(pixels: NDArray[np.float32]) -> float:
    """2 % quantile of the pixels' chroma over lightness along their mean hue, over its mean (0..1)."""
    along = _along(pixels[:, 1:] - 128.0, pixels[:, 0], pixels.mean(axis=0))
    return float(np.clip(np.quantile(along, 0.02), 0.0, 1.0)) if len(along) else 0.0


def _along(chroma: NDArray, lightness: NDArray, mean: NDArray) -> NDArray[np.float32]:
    """Chroma over lightness along the hue of ``mean`` (an LAB colour), over the mean's own."""
    z = complex(float(mean[1]) - 128.0, float(mean[2]) - 128.0) / max(float(mean[0]), 1.0)
    if abs(z) < 1e-3:
        return np.ones(chroma.shape[:-1], np.float32)
    d = np.conj(z) / abs(z) ** 2
    along = (chroma[..., 0] * d.real - chroma[..., 1] * d.imag) / np.maximum(lightness, 1.0)
    return along.astype(np.float32)


def _chroma_factor(z_from: complex, z_to: complex, max_saturation: float, max_turn: float) -> complex:
    """``z_to / z_from`` with its size and angle capped; 1 when either colour is nearly grey."""
    if abs(z_from) < 2.0 or abs(z_to) < 2.0:
        return 1.0 + 0.0j
    factor = z_to / z_from
    size = float(np.clip(abs(factor), 1.0 / max_saturation, max_saturation))
    turn = float(np.clip(np.angle(factor), -np.radians(max_turn), np.radians(max_turn)))
    return complex(size * np.cos(turn), size * np.sin(turn))


def gain_field(
    additive: Lab, pivot: Lab, *, lightness: tuple[float, float] = (0.4, 2.5), max_saturation: float = 2.5,
    max_turn: float = 45.0,
) -> NDArray[np.float32]:
    """An additive LAB correction made multiplicative about the skin colour ``pivot`` it was meant for.

    Where the skin's colour ``pivot`` should become ``pivot + additive``, every pixel's lightness is
    multiplied by the same ratio and its chroma by the same complex factor: the skin gets exactly the
    correction, darker and less coloured features proportionally less, and none crosses grey.
    Returns (H, W, 3): the lightness factor, the log of the chroma factor's size and its angle
    (radians), each capped as in :func:`colour_match`; apply it with :func:`recolour`. (Log and
    angle, not the complex factor's parts: that is the form ``recolour`` works in, and a field is
    smooth in it too, so it upsamples as well.)
    """
    out = np.empty_like(additive, dtype=np.float32)
    base = np.maximum(pivot[..., 0], 8.0)
    out[..., 0] = np.clip((base + additive[..., 0]) / base, *lightness)
    za = pivot[..., 1] - 128.0 + 1j * (pivot[..., 2] - 128.0)
    size = np.abs(za)
    # A nearly grey pivot has no hue to keep: lift it to a small colour in its own direction (or a
    # warm skin direction when it is exactly grey) so the factor stays finite.
    warm = np.complex64(0.6 + 0.8j)
    za = np.where(size < 4.0, np.where(size > 1e-3, za / np.maximum(size, 1e-3), warm) * 4.0, za)
    factor = (za + additive[..., 1] + 1j * additive[..., 2]) / za
    out[..., 1] = np.log(np.clip(np.abs(factor), 1.0 / max_saturation, max_saturation))
    out[..., 2] = np.clip(np.angle(factor), -np.radians(max_turn), np.radians(max_turn))
    return out


def _smoothstep(x: NDArray[np.float32], low: float, high: float) -> NDArray[np.float32]:
    t = np.clip((x - low) * (1.0 / (high - low)), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def recolour(
    lab: Lab, transfer: ColourGain, field: NDArray[np.float32] | None = None,
    skin: NDArray[np.floating] | None = None,
) -> Lab:
    """``lab`` with the global ``transfer`` and the per-pixel factors of :func:`gain_field` applied.

    Lightness takes both factors. Chroma takes the skin's colour change in full only where a pixel
    looks like the skin whose mean LAB colour is ``skin``: about as light, and about as coloured for
    its lightness. On darker or greyer pixels (brows, lashes, stubble, eye whites) it fades to half
    the skin's desaturation and none of its saturation, the rest being the lightness factor, which
    keeps their own hue and saturation under the new light: a black-brown brow neither turns grey on
    a paler face nor blue on a redder one.
    """
    lightness = np.maximum(lab[..., 0], 1.0)
    f_l = np.full(lab.shape[:2], transfer.gain, np.float32)
    if transfer.exponent != 1.0:
        f_l *= lightness ** np.float32(transfer.exponent - 1.0)
    # The chroma factor, as size over the lightness factor (log) and turn: ratio = f_z / f_l.
    log_size = np.full(lab.shape[:2], np.log(max(abs(transfer.chroma), 1e-6)), np.float32)
    turn = np.full(lab.shape[:2], np.angle(transfer.chroma), np.float32)
    if field is not None:
        f_l *= field[..., 0]
        log_size += field[..., 1]
        turn += field[..., 2]
    log_size -= cv2.log(f_l)
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    if skin is not None:
        skin_l = max(float(skin[0]), 1.0)
        relative = lightness * np.float32(1.0 / skin_l)
        weight = _smoothstep(relative, 0.4, 0.75)
        sa, sb = (float(skin[1]) - 128.0) / skin_l, (float(skin[2]) - 128.0) / skin_l
        norm = sa * sa + sb * sb
        if norm > 1e-6:
            along = (a * np.float32(sa / norm) + b * np.float32(sb / norm)) / lightness
            # Brighter than the skin and paler is a highlight (the light's colour on the skin), not
            # a grey feature: it takes the skin's change, or dimmed it would stay grey.
            weight *= np.maximum(_smoothstep(along, 0.25, 0.85), _smoothstep(relative, 0.95, 1.15))
            if transfer.palest > 0.0:
                # Skin-like pixels paler (for their lightness) than the target's palest skin are
                # lifted to it: a source whose skin varies more than the target's must not show
                # grey patches.
                lift = np.clip(np.float32(transfer.palest) / np.maximum(along, 0.05), 1.0, 2.0)
                log_size += weight * np.log(lift)
        # Pixels unlike the skin take half its desaturation (part of the skin's change is the colour
        # of the light, which falls on the brows too) but none of its saturation: a grey or bluish
        # shadow scaled up with the skin would turn blue.
        log_size *= np.where(log_size > 0.0, weight, 0.5 + 0.5 * weight)
        turn *= 0.5 + 0.5 * weight
    cos, sin = cv2.polarToCart(f_l * cv2.exp(log_size), turn)  # size * (cos, sin) of the turn
    out = np.empty_like(lab, dtype=np.float32)
    out[..., 0] = lightness * f_l
    out[..., 1] = a * cos - b * sin + 128.0
    out[..., 2] = a * sin + b * cos + 128.0
    return out


@dataclass(frozen=True)
class ChromaFloor:
    """Per band of lightness (relative to the skin's), the least colour along the skin's hue that a
    face pixel may have: what the greyest or bluest pixels of the reference faces show at that
    lightness (see :func:`chroma_floor`)."""

    lightness: float
    """The skin's lightness that relative lightness is taken against."""
    hue: tuple[float, float]
    """Unit a*, b* direction of the skin's hue."""
    bound: NDArray[np.float32]
    """Least chroma along the hue at each relative lightness of ``FLOOR_GRID``."""


FLOOR_BANDS = np.linspace(0.05, 1.95, 20).astype(np.float32)
"""Centres of the relative-lightness bands (0.1 wide) the reference faces are measured in."""
FLOOR_GRID = np.linspace(0.0, 2.0, 81).astype(np.float32)
"""Relative lightnesses at which :class:`ChromaFloor` holds its bound (interpolated between)."""
FLOOR_LIGHTNESS_SLACK = 0.08
"""How far (as a share) a face's relative lightness may be misjudged: its skin's lightness is a
median over some skin, which differs between the target, the source and the swapped face by a few
percent. The floor at each lightness is the strictest of the bands within that range."""
FLOOR_MARGIN = 1.0
"""How far above the references' least chroma (8-bit LAB units) a lifted pixel is put: on the bound
itself, any error in the skin's hue direction or lightness would leave it just below."""


def _skin_frame(lab: Lab, skin: BinaryMask) -> tuple[float, NDArray[np.float64]]:
    pixels = lab[skin > 0]
    median = np.median(pixels, axis=0) if len(pixels) else np.array([128.0, 128.0, 128.0])
    hue = median[1:] - 128.0
    norm = float(np.hypot(*hue))
    return float(max(median[0], 1.0)), (hue / norm if norm > 1.0 else np.array([0.6, 0.8]))


def _along_hue(lab: Lab, lightness: float, hue: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
    rel = lab[..., 0] * np.float32(1.0 / lightness)
    u = (lab[..., 1] - 128.0) * np.float32(hue[0]) + (lab[..., 2] - 128.0) * np.float32(hue[1])
    return rel, u


def face_gamut(
    lab: Lab, skin: BinaryMask, face: BinaryMask, *, quantile: float = 0.005
) -> NDArray[np.float32]:
    """Per relative-lightness band (``FLOOR_BANDS``), the least chroma along the skin's hue that a face
    shows (its ``quantile``), read in its own skin's frame (lightness over its skin's, chroma along its
    skin's hue), so a dark face and a pale one compare feature for feature. Bands the face does not
    fill take the nearest filled band's value (all -inf for an empty face)."""
    lightness, hue = _skin_frame(lab, skin)
    rel, u = _along_hue(lab[face > 0], lightness, hue)
    band = np.clip(np.rint((rel - FLOOR_BANDS[0]) / 0.1).astype(int), 0, len(FLOOR_BANDS) - 1)
    low = _band_quantiles(u, band, len(FLOOR_BANDS), quantile, min_count=20)
    filled = np.nonzero(~np.isnan(low))[0]
    if len(filled):
        return low[filled[np.abs(np.arange(len(low))[:, None] - filled[None, :]).argmin(axis=1)]]
    low[:] = -np.inf
    return low


def chroma_floor(
    target: Lab, target_skin: BinaryMask, target_face: BinaryMask, source_gamut: NDArray[np.float32],
) -> ChromaFloor:
    """The :class:`ChromaFloor` of two faces: per lightness, the lower of what either face shows
    (``source_gamut``: the source's :func:`face_gamut`, measured once at its own resolution, not on
    a resampled copy whose blurred feature edges would vouch for their own greyness)."""
    bounds = np.minimum(face_gamut(target, target_skin, target_face), source_gamut)
    lightness, hue = _skin_frame(target, target_skin)
    return ChromaFloor(lightness, (float(hue[0]), float(hue[1])), _strictest(bounds))


def _strictest(bands: NDArray[np.float32]) -> NDArray[np.float32]:
    """Per relative lightness of ``FLOOR_GRID``, the highest band bound within the lightness slack,
    plus the margin (the bands are steps: a pixel at a band's edge is held to its neighbour's too)."""
    last = len(FLOOR_BANDS) - 1
    low = np.clip(np.floor(FLOOR_GRID / (1.0 + FLOOR_LIGHTNESS_SLACK) / 0.1).astype(int), 0, last)
    high = np.clip(np.floor(FLOOR_GRID * (1.0 + FLOOR_LIGHTNESS_SLACK) / 0.1).astype(int), 0, last)
    strictest = [bands[a : b + 1].max() for a, b in zip(low.tolist(), high.tolist(), strict=True)]
    return (np.asarray(strictest, np.float32) + np.float32(FLOOR_MARGIN)).astype(np.float32)


def _band_quantiles(
    values: NDArray, band: NDArray, bands: int, quantile: float, min_count: int
) -> NDArray[np.float32]:
    """Per band, the ``quantile`` of ``values`` (linear interpolation, as ``np.quantile``), or NaN
    where a band has fewer than ``min_count`` values; one sort for all bands."""
    low = np.full(bands, np.nan, np.float32)
    if len(values) == 0:
        return low
    ordered = np.asarray(values, np.float64)[np.lexsort((values, band))]
    counts = np.bincount(band, minlength=bands)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    position = starts + quantile * np.maximum(counts - 1, 0)
    below = np.clip(np.floor(position).astype(int), 0, len(ordered) - 1)
    above = np.clip(np.minimum(below + 1, starts + counts - 1), 0, len(ordered) - 1)
    mix = position - np.floor(position)
    found = counts >= min_count
    low[found] = (ordered[below] * (1.0 - mix) + ordered[above] * mix)[found]
    return low


def apply_chroma_floor(lab: Lab, floor: ChromaFloor, weight: NDArray[np.float32] | None = None) -> None:
    """Lift, in place, pixels less coloured along the skin's hue than the floor allows at their
    lightness (greyer or bluer than either face shows) up to it, by ``weight`` (0..1) per pixel."""
    hue = np.asarray(floor.hue)
    rel, u = _along_hue(lab, floor.lightness, hue)
    # FLOOR_GRID is uniform: the interpolation is an index and a mix (np.interp searches the grid).
    at = np.clip(rel * np.float32((len(FLOOR_GRID) - 1) / FLOOR_GRID[-1]), 0.0, len(FLOOR_GRID) - 1.0)
    below = np.minimum(at.astype(np.intp), len(FLOOR_GRID) - 2)
    step = np.diff(floor.bound, append=floor.bound[-1]).astype(np.float32)
    bound = floor.bound[below] + (at - below) * step[below]
    lift = np.maximum(bound - u, 0.0)
    if weight is not None:
        lift *= weight
    lab[..., 1] += lift * np.float32(hue[0])
    lab[..., 2] += lift * np.float32(hue[1])


def masked_blur(values: NDArray[np.float32], weights: BinaryMask, sigma: float) -> NDArray[np.float32]:
    """Normalised convolution: the Gaussian blur (scale ``sigma`` px) of ``values`` over ``weights``
    only, so pixels outside the weights (eyes, brows, hair) do not leak in. Run on a copy scaled so
    that ``sigma`` is a few pixels: its cost does not depend on the image size. Where no weight
    reaches, the weighted mean of the whole."""
    h, w = values.shape[:2]
    factor = max(1.0, sigma / 3.0)
    size = (max(round(w / factor), 4), max(round(h / factor), 4))
    weight = cv2.resize(weights.astype(np.float32) * (1.0 / 255.0), size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(values, size, interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = small[..., None]
    total = max(float(weight.sum()), 1e-6)
    mean = (small * weight[..., None]).reshape(-1, small.shape[2]).sum(axis=0) / total
    s = sigma / factor
    blurred = cv2.GaussianBlur(small * weight[..., None], (0, 0), sigmaX=s, sigmaY=s).reshape(small.shape)
    norm = cv2.GaussianBlur(weight, (0, 0), sigmaX=s, sigmaY=s)[..., None]
    # Blend towards the global mean where the local weight thins out, so the result stays finite.
    trust = np.clip(norm * 20.0, 0.0, 1.0)
    low = (blurred / np.maximum(norm, 1e-6)) * trust + mean * (1.0 - trust)
    low = cv2.resize(low.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return low.reshape(values.shape)


def relight_field(
    lab: Lab,
    reference: Lab,
    weights: BinaryMask,
    sigma: float,
    *,
    strength: tuple[float, float, float] = (1.0, 0.5, 0.5),
) -> Lab:
    """The low-frequency part (scale ``sigma`` px) of ``reference - lab`` over ``weights``, per channel.

    Added to ``lab`` it carries the reference's broad shading (a shadowed side, a warm light) while
    keeping the image's own detail. Normalised convolution ignores pixels outside ``weights`` (eyes,
    brows, mouth and hair differ between two faces in ways that are not light).
    """
    return masked_blur(reference - lab, weights, sigma) * np.asarray(strength, dtype=np.float32)


def poisson_field(
    source: Lab, target: Lab, mask: BinaryMask, *, max_side: int = 96, robust: bool = True,
    trusted: BinaryMask | None = None,
) -> Lab:
    """The smooth field that, added to ``source``, makes it meet ``target`` along the mask's edge.

    This is the colour part of Poisson (seamless) cloning: the correction (clone - source) is the
    membrane (harmonic function) inside the mask that takes the value ``target - source`` on the
    pixels just outside it (see :func:`membrane`). It is smooth by construction, so it is solved on a
    copy of the mask's bounding rectangle scaled down to at most ``max_side`` pixels and scaled back
    up: a few milliseconds whatever the face size. The field is 0 outside that rectangle.
    (``cv2.seamlessClone`` is not used: it solves over the whole rectangle with the target's own
    gradients outside an eroded mask, which carries the target's features, a brow near the edge, into
    the correction as dark bands.)

    With ``robust``, target pixels along the edge that differ from the source far more than the rest
    (a strand of hair, an ear, a hand crossing the edge) are pulled towards the typical difference
    first, so they do not bleed a shadow across the whole face.

    ``trusted`` marks the target pixels that may give the edge its values (its plain skin): along
    the rest of the edge (a brow or grey hair the mask's edge runs through) the values are spread
    from the trusted pixels beside them, so no feature of the target is smeared into the face.
    """
    field = np.zeros_like(source, dtype=np.float32)
    rect = mask_rect(mask, margin=4)
    if rect is None:
        return field
    x, y, w, h = rect
    part = (slice(y, y + h), slice(x, x + w))
    diff, msk = target[part] - source[part], mask[part]
    known = np.ones((h, w), np.float32) if trusted is None else (trusted[part] > 0).astype(np.float32)
    scale = min(1.0, max_side / max(w, h))
    size = (max(round(w * scale), 8), max(round(h * scale), 8))
    if scale < 1.0:
        # Averaged over trusted pixels only: an untrusted one does not darken its trusted neighbours.
        known_s = cv2.resize(known, size, interpolation=cv2.INTER_AREA)
        diff_s = cv2.resize(diff * known[..., None], size, interpolation=cv2.INTER_AREA)
        diff_s = diff_s.reshape(size[1], size[0], -1) / np.maximum(known_s, 1e-6)[..., None]
        msk_s = np.where(cv2.resize(msk, size, interpolation=cv2.INTER_AREA) >= 128, 255, 0).astype(np.uint8)
    else:
        diff_s, known_s, msk_s = diff, known, msk
    if np.count_nonzero(msk_s) < 4:
        return field
    if robust:
        diff_s = _clamp_boundary(diff_s, msk_s, known_s)
    correction = membrane(diff_s, msk_s, known_s)
    if scale < 1.0:
        correction = cv2.resize(correction, (w, h), interpolation=cv2.INTER_LINEAR)
    field[y : y + h, x : x + w] = correction
    return field


_MEMBRANE_SWEEPS = 16  # Jacobi sweeps per pyramid level (each level starts from the coarser solution)
_MIN_KNOWN_EDGE = 0.2  # share of the edge that must be trusted for the trust to count at all


def membrane(
    values: NDArray[np.float32], mask: BinaryMask, known: NDArray[np.float32] | None = None
) -> NDArray[np.float32]:
    """The harmonic (as smooth as possible) interpolation into ``mask`` of ``values`` on the pixels
    just outside it; (H, W, C) float32, equal to the interpolation inside the mask and to a smooth
    extension of the boundary values outside. ``known`` (0..1 per pixel) weighs how far each
    boundary value is to be believed; the others are filled in from their neighbours along the edge
    (all are believed when too few are).

    Solved coarse to fine: the boundary values are spread over the rectangle by push-pull (so every
    level has boundary values next to its own mask), the Laplace equation is relaxed by Jacobi sweeps
    on each level of a pyramid, each level starting from the one below. On the few dozen pixels a
    colour field needs this converges in a millisecond or two.
    """
    values = np.asarray(values, np.float32)
    if values.ndim == 2:
        return membrane(values[..., None], mask, known)[..., 0]
    inside = mask > 0
    ring = (cv2.dilate(mask, np.ones((3, 3), np.uint8)) > 0) & ~inside
    if not ring.any():  # the mask fills the rectangle: nothing to meet
        return np.zeros_like(values)
    weights = ring.astype(np.float32)
    if known is not None and float((weights * known).sum()) >= _MIN_KNOWN_EDGE * float(weights.sum()):
        weights *= known
    boundary = _push_pull(values, weights)
    levels = [(boundary, inside)]
    while min(levels[-1][1].shape) > 8:
        b, m = levels[-1]
        half = ((m.shape[1] + 1) // 2, (m.shape[0] + 1) // 2)
        small_b = cv2.resize(b, half, interpolation=cv2.INTER_AREA).reshape(half[1], half[0], -1)
        small_m = cv2.resize(m.astype(np.float32), half, interpolation=cv2.INTER_AREA) > 0.5
        levels.append((small_b, small_m))
    solution: NDArray[np.float32] | None = None
    kernel = np.float32([[0, 0.25, 0], [0.25, 0, 0.25], [0, 0.25, 0]])
    for b, m in reversed(levels):
        if solution is None:
            current = b.copy()
        else:
            up = cv2.resize(solution, (m.shape[1], m.shape[0]), interpolation=cv2.INTER_LINEAR)
            current = np.where(m[..., None], up.reshape(b.shape), b)
        fixed = np.where(m, 0, 255).astype(np.uint8)  # outside the mask the values stay the boundary's
        for _ in range(_MEMBRANE_SWEEPS):  # OpenCV calls only: no GIL held while the engine's threads run
            smooth = cv2.filter2D(current, -1, kernel, borderType=cv2.BORDER_REPLICATE)
            current = cv2.copyTo(b, fixed, smooth.reshape(b.shape))
        solution = current.reshape(b.shape)
    assert solution is not None
    return solution.astype(np.float32)


def _push_pull(values: NDArray[np.float32], weights: NDArray[np.float32]) -> NDArray[np.float32]:
    """``values`` known where ``weights`` > 0, spread smoothly over the whole array (push-pull: weighted
    averages down a pyramid, then filled back up from the coarser levels where nothing is known)."""
    if min(weights.shape) <= 2 or weights.sum() <= 0:
        total = max(float(weights.sum()), 1e-6)
        mean = (values * weights[..., None]).reshape(-1, values.shape[2]).sum(axis=0) / total
        return np.broadcast_to(mean.astype(np.float32), values.shape).copy()
    h, w = weights.shape
    half = ((w + 1) // 2, (h + 1) // 2)
    small_w = cv2.resize(weights, half, interpolation=cv2.INTER_AREA)
    small_vw = cv2.resize(values * weights[..., None], half, interpolation=cv2.INTER_AREA)
    small_vw = small_vw.reshape(half[1], half[0], -1)
    small_v = small_vw / np.maximum(small_w, 1e-6)[..., None]
    coarse = _push_pull(small_v, small_w)
    up = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR).reshape(values.shape)
    trust = np.minimum(weights * 4.0, 1.0)[..., None]
    return values * trust + up * (1.0 - trust)


def _clamp_boundary(diff: Lab, mask: BinaryMask, known: NDArray[np.float32]) -> Lab:
    """``diff`` clamped to the robust range seen along the mask's edge (its trusted part)."""
    ring = (dilate(mask, 2) > 0) & (mask == 0)  # the pixels whose values the membrane takes
    trusted = ring & (known >= 0.5)
    edge = diff[trusted] if np.count_nonzero(trusted) >= 8 else diff[ring]
    if len(edge) < 8:
        return diff
    median = np.median(edge, axis=0)
    spread = np.maximum(3.0 * 1.4826 * np.median(np.abs(edge - median), axis=0), 10.0)
    return np.clip(diff, median - spread, median + spread)


def alpha_blend(target: Image, source: Image, alpha: Mask) -> Image:
    """``source * alpha + target * (1 - alpha)`` as a new uint8 image (same sizes)."""
    alpha = np.ascontiguousarray(alpha, dtype=np.float32)
    return cv2.blendLinear(source, target, alpha, 1.0 - alpha)


# --- whole-image conveniences (BGR in, BGR out) ---------------------------------------------------------


def color_transfer(
    image: Image, source_mask: BinaryMask, reference: Image, reference_mask: BinaryMask
) -> Image:
    """``image`` recoloured so its colour under ``source_mask`` matches ``reference``'s under its mask
    (see :func:`colour_match`)."""
    lab = to_lab(image)
    return from_lab(colour_match(lab, source_mask, to_lab(reference), reference_mask).apply(lab))


def seamless_blend(
    target: Image, source: Image, mask: BinaryMask, *, feather_px: float = 0.0, max_side: int = 96
) -> Image:
    """Poisson-blend ``source`` into ``target`` inside ``mask`` and return the new image.

    The Poisson-corrected source is alpha-blended with the mask feathered by ``feather_px``; only the
    mask's bounding rectangle can change, every other pixel of the result equals ``target``.
    """
    out = target.copy()
    rect = mask_rect(mask, margin=4)
    if rect is None:
        return out
    x, y, w, h = rect
    roi = (slice(y, y + h), slice(x, x + w))
    lab = to_lab(source[roi])
    lab += poisson_field(lab, to_lab(target[roi]), mask[roi], max_side=max_side)
    out[roi] = alpha_blend(target[roi], from_lab(lab), feather(mask[roi], feather_px))
    return out
