"""Quality measures of a face swap: colour artifacts, identity, and coverage of faces in a clip.

- :func:`artifact_share`: per face, the share of face pixels (eyes and mouth opening left out) that
  are too grey or too blue for their relative lightness, judged against both the target's and the
  source's own face colours, minus the target's own share. Colours are read in each face's skin hue
  frame: ``u`` is the chroma along the direction of the face's median skin hue (a* b*), so grey is
  ``u = 0`` and blue is ``u < 0``; lightness is relative to the face's median skin lightness. Per
  lightness bin, each reference face gives the lowest ``u`` it shows itself (its 0.5 % quantile); an
  output pixel is an artifact when its ``u`` lies below both. Natural swaps score about 0-0.5 %;
  grey-blue brows and eye sockets 1-6 %.
- :func:`identity_distance`: dlib's recognizer, aligned by dlib's own 5-point shape predictor inside
  the face box (not by the mesh points the swap moves), so the measure does not follow the swap's
  landmarks. The classical swapper optimises no recognizer.
- :func:`clip_coverage`: an outside detector (dlib's HOG face detector, which shares nothing with the
  MediaPipe models the pipeline tracks with) runs on every input frame; a face it finds counts as
  swapped when the output differs from the input inside the middle of its box.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages import blend
from masquerade._stages import swap_mesh_masks as masks
from masquerade.geometry import mesh
from masquerade.types import Face, Image

LIGHTNESS_BINS = np.linspace(0.0, 2.0, 21)
"""Bins of lightness relative to the face's median skin lightness."""
GAMUT_QUANTILE = 0.005
"""Per bin, the lowest ``u`` a reference face shows (a quantile: a few odd pixels do not count)."""
GAMUT_MARGIN = 1.0
"""Slack below the references' lowest ``u`` (8-bit LAB units)."""
MIN_BIN_PIXELS = 30
SWAPPED_DIFF = 2.0
"""How much more (mean absolute difference, grey levels, in the middle of a face box) the output must
differ from the input than the watermarked input does for the face to count as swapped."""


def _size(landmarks: NDArray[np.floating]) -> float:
    span = landmarks[:, :2].max(axis=0) - landmarks[:, :2].min(axis=0)
    return float(np.sqrt(max(span[0], 1.0) * max(span[1], 1.0)))


def face_region(image: Image, landmarks: Sequence[NDArray[np.floating]]) -> NDArray[np.uint8]:
    """0/255 mask of the face's pixels in ``image``: inside the outline of the first mesh, less what
    covers it from the edge and is not skin (hair, a hat, background inside the mesh's outline on a
    turned head), less the eyes and mouth opening of every mesh in ``landmarks`` (grown a little:
    lashes and lid shadows are the eye's)."""
    shape = image.shape
    first = np.asarray(landmarks[0], dtype=np.float32)
    size = _size(first)
    region = blend.polygon_mask(shape, [first[list(mesh.FACE_OVAL), :2]])
    region[masks.hair(blend.to_lab(image), first[:, :2], region, size) > 0] = 0
    for lm in landmarks:
        lm = np.asarray(lm, dtype=np.float32)
        eyes = [lm[list(mesh.RIGHT_EYE), :2], lm[list(mesh.LEFT_EYE), :2]]
        region[blend.polygon_mask(shape, eyes, grow=max(1, round(0.03 * size))) > 0] = 0
        mouth = [lm[list(mesh.LIPS_INNER), :2]]
        region[blend.polygon_mask(shape, mouth, grow=max(1, round(0.01 * size))) > 0] = 0
    return region


def _skin_frame(lab: blend.Lab, landmarks: NDArray[np.floating]) -> tuple[float, NDArray[np.float64]]:
    """Median skin lightness and the unit a*b* direction of the skin's hue, from the cheeks and nose."""
    pts = np.asarray(landmarks, dtype=np.float32)[:, :2]
    samples = np.zeros(lab.shape[:2], np.uint8)
    radius = max(1, round(0.04 * _size(pts)))
    for i in mesh.SKIN_SAMPLES:
        cv2.circle(samples, (round(float(pts[i, 0])), round(float(pts[i, 1]))), radius, 255, -1)
    skin = lab[samples > 0]
    if len(skin) < 8:
        skin = lab.reshape(-1, 3)
    median = np.median(skin, axis=0)
    hue = median[1:] - 128.0
    norm = float(np.hypot(*hue))
    direction = hue / norm if norm > 1.0 else np.array([0.6, 0.8])  # an orange default for grey faces
    return float(max(median[0], 1.0)), direction


def _colours(
    image: Image, landmarks: NDArray[np.floating], region: NDArray[np.uint8]
) -> tuple[NDArray, NDArray]:
    """(relative lightness, u) of the region's pixels in the face's own skin hue frame."""
    x, y, w, h = blend.mask_rect(region) or (0, 0, 1, 1)
    lab = blend.to_lab(np.ascontiguousarray(image[y : y + h, x : x + w]))
    shifted = np.asarray(landmarks, dtype=np.float32)[:, :2] - np.float32([x, y])
    lightness, direction = _skin_frame(lab, shifted)
    pixels = lab[region[y : y + h, x : x + w] > 0].astype(np.float64)
    u = (pixels[:, 1] - 128.0) * direction[0] + (pixels[:, 2] - 128.0) * direction[1]
    return pixels[:, 0] / lightness, u


def _gamut(relative: NDArray, u: NDArray) -> NDArray[np.float64]:
    """Per lightness bin, the lowest ``u`` the face shows; empty bins take their nearest filled bin's."""
    bins = np.clip(np.digitize(relative, LIGHTNESS_BINS) - 1, 0, len(LIGHTNESS_BINS) - 2)
    n = len(LIGHTNESS_BINS) - 1
    low = np.full(n, np.nan)
    for b in range(n):
        values = u[bins == b]
        if len(values) >= MIN_BIN_PIXELS:
            low[b] = np.quantile(values, GAMUT_QUANTILE)
    filled = np.nonzero(~np.isnan(low))[0]
    if len(filled) == 0:
        return np.full(n, -np.inf)
    nearest = filled[np.abs(np.arange(n)[:, None] - filled[None, :]).argmin(axis=1)]
    return low[nearest]


def _share_below(relative: NDArray, u: NDArray, bound: NDArray[np.float64]) -> float:
    if len(u) == 0:
        return 0.0
    bins = np.clip(np.digitize(relative, LIGHTNESS_BINS) - 1, 0, len(LIGHTNESS_BINS) - 2)
    return float(np.mean(u < bound[bins]))


def _bound(target: Image, target_landmarks: NDArray[np.floating], source: Image,
           source_landmarks: NDArray[np.floating]) -> NDArray[np.float64]:
    """Per lightness bin, the lowest ``u`` either reference face shows, less the margin."""
    own = _gamut(*_colours(target, target_landmarks, face_region(target, [target_landmarks])))
    other = _gamut(*_colours(source, source_landmarks, face_region(source, [source_landmarks])))
    return np.minimum(own, other) - GAMUT_MARGIN


def _bad(image: Image, landmarks: NDArray[np.floating], region: NDArray[np.uint8],
         bound: NDArray[np.float64]) -> NDArray[np.bool_]:
    """Per region pixel (row-major order), whether it is too grey or too blue for its lightness."""
    relative, u = _colours(image, landmarks, region)
    bins = np.clip(np.digitize(relative, LIGHTNESS_BINS) - 1, 0, len(LIGHTNESS_BINS) - 2)
    return u < bound[bins]


def artifact_share(
    output: Image, target: Image, target_landmarks: NDArray[np.floating], source: Image,
    source_landmarks: NDArray[np.floating], output_landmarks: NDArray[np.floating] | None = None,
) -> float:
    """Percent of the face's pixels too grey or too blue for their lightness, minus the target's own.

    ``output_landmarks`` (the mesh fitted on the output) adds the output's own eyes and mouth to what
    is left out and keeps only pixels inside both outlines, as the swap moves features and outline
    towards the source's.
    """
    meshes = [target_landmarks] + ([output_landmarks] if output_landmarks is not None else [])
    region = face_region(target, meshes)
    if output_landmarks is not None:  # the swap may move the outline: face in both pictures only
        region &= face_region(output, meshes[::-1])
    if not np.any(region):
        return 0.0
    bound = _bound(target, target_landmarks, source, source_landmarks)
    own = _bad(target, target_landmarks, region, bound)
    after = _bad(output, target_landmarks, region, bound)
    return 100.0 * (float(after.mean()) - float(own.mean()))


def artifact_map(
    output: Image, target: Image, target_landmarks: NDArray[np.floating], source: Image,
    source_landmarks: NDArray[np.floating],
) -> NDArray[np.uint8]:
    """0/255 mask of the output's artifact pixels (for pictures: where the score comes from)."""
    region = face_region(target, [target_landmarks])
    out = np.zeros(region.shape, np.uint8)
    if np.any(region):
        bound = _bound(target, target_landmarks, source, source_landmarks)
        bad = _bad(output, target_landmarks, region, bound)
        ys, xs = np.nonzero(region)  # row-major, as _colours reads the region
        out[ys[bad], xs[bad]] = 255
    return out


def identity_distance(recognizer, image: Image, face: Face, reference: NDArray[np.float32]) -> float:
    """dlib distance between the face in ``face``'s box (aligned by dlib's own 5-point predictor) and
    ``reference``."""
    bare = Face(bbox=face.bbox, kps5=face.kps5)
    return float(recognizer.distance(recognizer.embed(image, bare), reference))


def embed_box(recognizer, image: Image, face: Face) -> NDArray[np.float32]:
    """The recognizer's embedding of the face in ``face``'s box, aligned by dlib's predictor."""
    return recognizer.embed(image, Face(bbox=face.bbox, kps5=face.kps5))


# --- pictures ----------------------------------------------------------------------------------------


def face_crop(image: Image, face: Face, side: int, pad: float = 0.35) -> Image:
    """A square crop around the face (``pad`` face sizes of margin), resized to ``side`` px."""
    cx, cy = (float(v) for v in face.center)
    half = (0.5 + pad) * max(face.width, face.height)
    m = np.float32([[side / (2 * half), 0, side / 2 - cx * side / (2 * half)],
                    [0, side / (2 * half), side / 2 - cy * side / (2 * half)]])
    interp = cv2.INTER_AREA if side < 2 * half else cv2.INTER_CUBIC
    return cv2.warpAffine(image, m, (side, side), flags=interp, borderMode=cv2.BORDER_CONSTANT)


def labelled(image: Image, text: str) -> Image:
    """The image with a one-line caption bar on top."""
    bar = np.full((18, image.shape[1], 3), 32, np.uint8)
    cv2.putText(bar, text, (3, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (235, 235, 235), 1, cv2.LINE_AA)
    return np.vstack([bar, image])


def contact_sheet(tiles: Sequence[Image], columns: int, gap: int = 4) -> Image:
    """Tiles (same size) laid out in a grid on a dark background."""
    if not tiles:
        return np.zeros((8, 8, 3), np.uint8)
    th, tw = tiles[0].shape[:2]
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.full((rows * (th + gap) + gap, columns * (tw + gap) + gap, 3), 16, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        sheet[y : y + th, x : x + tw] = tile
    return sheet


# --- clips -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClipCoverage:
    detections: int
    """Faces the outside detector found, summed over frames."""
    swapped: int
    """Of those, how many were swapped in the output."""
    longest_gap: int
    """Longest run of consecutive frames in which one outside-detected face stayed unswapped."""
    start_jump: float
    """Largest change of a swapped face's mean colour (LAB units) from frame 0 to 1 beyond the input's."""
    flicker_ratio: float
    """Mean frame-to-frame change inside swapped faces, output over input (1 = no added flicker)."""
    band_flicker_ratio: float
    """The same in the band around them (the detector's box grown by BAND of its width, the box
    left out), where the swap makes jaw, neck and hair follow the new outline."""

    @property
    def share(self) -> float:
        return self.swapped / max(self.detections, 1)


def _boxes_iou(a: NDArray, b: NDArray) -> NDArray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


def _inner(box: NDArray, shape: tuple[int, ...]) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    xs = slice(int(max(x1 + 0.25 * w, 0)), int(min(x2 - 0.25 * w, shape[1])))
    ys = slice(int(max(y1 + 0.2 * h, 0)), int(min(y2 - 0.2 * h, shape[0])))
    return ys, xs


BAND = 0.3
"""Width of the band around a face box that ``ClipCoverage.band_flicker_ratio`` looks at (of the
box's width)."""


def _band(box: NDArray, shape: tuple[int, ...]) -> tuple[tuple[slice, slice], NDArray[np.bool_]]:
    """The rectangle of ``box`` grown by BAND, and the mask of its pixels outside ``box``."""
    x1, y1, x2, y2 = box
    grow = BAND * (x2 - x1)
    ox1, oy1 = int(max(x1 - grow, 0)), int(max(y1 - grow, 0))
    ox2, oy2 = int(min(x2 + grow, shape[1])), int(min(y2 + grow, shape[0]))
    mask = np.ones((max(oy2 - oy1, 0), max(ox2 - ox1, 0)), bool)
    mask[max(int(y1) - oy1, 0):max(int(y2) - oy1, 0), max(int(x1) - ox1, 0):max(int(x2) - ox1, 0)] = False
    return (slice(oy1, oy2), slice(ox1, ox2)), mask


def _change(a: Image, b: Image, where: tuple[slice, slice], mask: NDArray[np.bool_] | None = None) -> float:
    """Mean absolute difference of ``a`` and ``b`` on the rectangle ``where`` (only ``mask`` of it)."""
    diff = np.abs(a[where].astype(np.float32) - b[where])
    return float(diff.mean() if mask is None else diff[mask].mean()) if diff.size else 0.0


def clip_coverage(
    inputs: Sequence[Image], outputs: Sequence[Image], marked: Sequence[Image], upsample: int = 1
) -> ClipCoverage:
    """Run dlib's HOG face detector on every input frame and check each face it finds was swapped:
    the output differs from the input by SWAPPED_DIFF more than ``marked`` (the input with only the
    watermark added) does. A source swapped onto its own person still changes the skin's colour,
    light and grain by more than that."""
    import dlib

    detector = dlib.get_frontal_face_detector()
    tracks: list[tuple[NDArray, int]] = []  # (last box, current unswapped run)
    detections = swapped = longest = 0
    jumps: list[float] = []
    change_in = change_out = band_in = band_out = 0.0
    previous: list[NDArray] = []
    for index, (src, out, mark) in enumerate(zip(inputs, outputs, marked, strict=True)):
        rgb = cv2.cvtColor(src, cv2.COLOR_BGR2RGB)
        rects = detector(rgb, upsample)
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float64)
        boxes = boxes.reshape(-1, 4)
        overlap = _boxes_iou(np.array([t[0] for t in tracks]).reshape(-1, 4), boxes)
        new_tracks = []
        for j, box in enumerate(boxes):
            ys, xs = _inner(box, src.shape)
            if ys.stop <= ys.start or xs.stop <= xs.start:
                continue
            diff = float(np.abs(out[ys, xs].astype(np.int16) - src[ys, xs]).mean())
            floor = float(np.abs(mark[ys, xs].astype(np.int16) - src[ys, xs]).mean())
            ok = diff > floor + SWAPPED_DIFF
            detections += 1
            swapped += ok
            i = int(overlap[:, j].argmax()) if overlap.shape[0] else -1
            run = tracks[i][1] if i >= 0 and overlap[i, j] > 0.3 else 0
            run = 0 if ok else run + 1
            longest = max(longest, run)
            new_tracks.append((box, run))
            if ok and index > 0:
                for k, prev_box in enumerate(previous):
                    if _boxes_iou(prev_box[None], box[None])[0, 0] > 0.5:
                        change_out += _change(out, outputs[index - 1], (ys, xs))
                        change_in += _change(src, inputs[index - 1], (ys, xs))
                        around, ring = _band(box, src.shape)
                        if ring.any():
                            band_out += _change(out, outputs[index - 1], around, ring)
                            band_in += _change(src, inputs[index - 1], around, ring)
                        if index == 1:
                            lab = [blend.to_lab(np.ascontiguousarray(f[ys, xs])).reshape(-1, 3).mean(axis=0)
                                   for f in (out, outputs[0], src, inputs[0])]
                            jumps.append(float(np.linalg.norm((lab[0] - lab[1]) - (lab[2] - lab[3]))))
                        del k
                        break
        tracks = new_tracks
        previous = [t[0] for t in new_tracks]
    return ClipCoverage(detections, swapped, longest, max(jumps, default=0.0),
                        change_out / max(change_in, 1e-9), band_out / max(band_in, 1e-9))
