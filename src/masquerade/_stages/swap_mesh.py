"""The embedded classical swapper: a piecewise-affine warp of the source face over the face mesh.

For each target face, every mesh triangle of the source face is mapped affinely onto the same
triangle of the target's landmarks, with the inner face (eyes, brows, nose) moved half way towards
the source's own proportions so the identity moves with the texture. Triangles are drawn far to near
(by the target's landmark depth), so on a turned head the far side that folds behind the nose or cheek
stays hidden. The pasted region
is trimmed to skin both faces show: source triangles seen edge-on and hair over either forehead stay
the target's. The warped face is recoloured in LAB (clamped statistics), given the target's broad
shading, Poisson-corrected on a down-scaled region of interest so it meets the target's skin along the
edge, and alpha-blended with a feathered mask. The target's open mouth interior is kept (speech
survives) and so are its eyes while closed (blinks survive). Only a rectangle around the face is read
or written. In a batch of video frames a tracked face's work-scale analysis (where to paint, how to
recolour) is made on every third frame and carried along the mesh to the next two (``swap_batch``);
so is the warp that makes the jaw, neck and hair follow the new outline, while the face only moves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages import blend
from masquerade._stages import swap_mesh_masks as masks
from masquerade.config import SwapOptions
from masquerade.errors import NoSourceFaceError, UsageError
from masquerade.geometry import mesh
from masquerade.geometry.align import estimate_similarity
from masquerade.geometry.raster import triangle_ids
from masquerade.types import Face, Image

EYE_CLOSED_RATIO = 0.10
"""Eye aspect ratio below which the target's own eye is kept whole (a blink)."""
EYE_OPEN_RATIO = 0.16
"""Eye aspect ratio above which the eye is the source's; in between, a mix (eyes closing)."""
MOUTH_CLOSED_RATIO = 0.02
"""Inner-lip opening (over mouth width) below which the mouth is the source's."""
MOUTH_OPEN_RATIO = 0.05
"""Inner-lip opening above which the target's mouth interior is kept whole; in between, a mix."""
MIN_FACING = 0.25
"""Source triangles that face the camera less than this (cosine) are left to the target."""
EDGE_TRIM = 0.02
"""The pasted region stops this far inside the drawn mesh (fraction of the face size)."""
FEATHER = 0.05
"""Width of the soft edge (fraction of the face size)."""
WORK_SIZE = 96.0
"""Face size (px) at which masks and colour fields are computed (the warp runs at full size). 96 px
measured the same identity and colour-artifact scores as 128 on the quality matrix, ~10 ms less per
300 px face."""
SHAPE_BLEND = 0.5
"""How far the inner face (eyes, brows, nose, cheeks) moves from the target's shape to the source's."""
OUTLINE_BLEND = 0.75
"""How far the face's outline (jaw, chin, temples) moves from the target's shape to the source's."""
OUTLINE_TURN_POWER = 2.0
"""The outline's move is OUTLINE_BLEND times the face's frontality to this power: on a turned head the
outline is the silhouette, whose place in the picture the mesh reads from its least certain depth,
and moving it in shows the backdrop inside the target's old outline."""
WARP_ZONE = 0.25
"""Width of the band around the face (fraction of the face size) over which the target's jaw, neck,
ears and hair follow the moved outline; beyond it no pixel changes."""
BROW_COVER = 0.05
"""How far around the target's brows the swap paints fully (fraction of the face size)."""
POISSON_SIDE = 64
"""The Poisson field is solved on a copy at most this many pixels across (it is smooth)."""
PLAIN_SKIN = 1.0
"""Colour distance from the face's skin (see ``blend.colour_distance``) above which a pixel does not
inform the light carried from the target."""
EDGE_SKIN = 1.5
"""Colour distance from the target's skin above which a pixel along the region's edge gives the
Poisson correction no value (a brow, grey hair, a lash line: not the skin the face must meet)."""
EDGE_DETAIL = 20.0
"""How much darker or brighter (8-bit LAB lightness) than the skin beside it a pixel along the region's
edge may be and still give the Poisson correction a value (a brow's tail is 40-70 darker)."""
RELIGHT_SIGMA = 0.08
"""Scale of the target shading carried onto the face (fraction of the face size)."""
HIGHLIGHT_MARGIN = 25.0
"""How much brighter (8-bit LAB lightness) than the target's local skin the swapped face may get."""
CARRIED_FRAMES = 2
"""In a batch of video frames, how many frames after the one it was made on a face's work-scale
analysis is carried to (see ``MeshSwapper.swap_batch``): 2, every third frame analysed afresh."""
VIDEO_BATCH = CARRIED_FRAMES + 1
"""Frames per batch the engine gives the embedded swap: one analysis and the frames it is carried to."""
FOLLOW_TOLERANCE = 1.0
"""How far (image px) the warp carried from an earlier frame may put any landmark's shift from this
frame's own, for the warp to be carried instead of made afresh: about the mesh's own frame-to-frame
jitter (0.4-0.7 px median on the group clip's 115 px faces)."""
CARRY_MOVE = 0.1
"""A face that since the analysis changed shape by more than this (its landmarks' median move on its
own rectangle, as a fraction of its size), changed size by more than this (log ratio) or moved in the
image by more than twice this (its centre, in face sizes) is analysed afresh: another face has taken
the track, or the picture cut."""
_SHAPE_FADE_RINGS = 3.0  # mesh rings over which the shape move fades in from the outline and lips
_EYE_KEEP = np.array([0.25, 0.7, 0.7], np.float32)  # share of the L, a, b change the eyes do not take
_ROI_PAD = 0.04  # margin of the region of interest around the landmarks (fraction of the face size)
_MIN_LEVEL_SIZE = 24.0  # smallest source face (px) kept in the pyramid
_GRAIN_TILE = 256  # side of the noise tile the grain is read from (px, repeats beyond)
_GRAIN_SEED = 0x6A41


def frontality(landmarks: NDArray[np.floating]) -> float:
    """How squarely the face looks at the camera: 1 = frontal, lower = turned (cos yaw * cos pitch)."""
    yaw, pitch = mesh.head_pose(landmarks)
    return float(np.cos(np.radians(yaw)) * np.cos(np.radians(pitch)))


@dataclass(frozen=True, eq=False)
class MeshSource:
    """The source face, prepared once per run by :meth:`MeshSwapper.prepare`."""

    image: Image
    """Crop of the source image around the face (BGR)."""
    landmarks: NDArray[np.float32]
    """(468, 3) landmarks in the crop's pixels."""
    face: Face
    """The chosen face, in the original source image's coordinates."""
    levels: tuple[tuple[NDArray[np.uint8], NDArray[np.float32]], ...]
    """(BGRA image, (468, 2) points) at full, half, quarter... resolution, to sample without aliasing;
    alpha is 0 where hair covers the source's face."""
    colours: tuple[NDArray[np.uint8], ...]
    """The levels' BGR channels alone, contiguous: what the full-resolution warp samples."""
    visible: NDArray[np.bool_]
    """Per mesh triangle: does it face the camera squarely enough in the source to trust its texture."""
    eyes_open: bool
    mouth_open: float
    """The source's inner-lip opening over its mouth width."""
    gamut: NDArray[np.float32]
    """The source face's least colour per lightness band (``blend.face_gamut``), at full resolution."""


class MeshSwapper:
    """Classical face swap onto the target's face mesh. ``prepare`` once, then ``swap`` per face."""

    def __init__(self, options: SwapOptions = SwapOptions()) -> None:  # noqa: B008 (frozen, immutable)
        self.options = options
        self._tris = mesh.triangles()
        # Per landmark, how far it moves to the source's shape: the lips not at all (the kept mouth
        # must fit them), the outline by OUTLINE_BLEND, the inner face by SHAPE_BLEND, fading between.
        from_lips = np.clip(mesh.hops(mesh.lip_points()) / _SHAPE_FADE_RINGS, 0.0, 1.0)
        at_edge = np.clip(1.0 - mesh.hops(mesh.FACE_OVAL) / _SHAPE_FADE_RINGS, 0.0, 1.0)
        self._outline_weight = from_lips * at_edge
        self._inner_weight = from_lips * (1.0 - at_edge) * SHAPE_BLEND
        # Unit white noise, tiled over the face for its grain (see ``_paint``); a fixed seed, so a
        # frame comes out the same whichever worker thread swaps it.
        self._noise = np.random.default_rng(_GRAIN_SEED).standard_normal((_GRAIN_TILE,) * 2, np.float32)

    def prepare(self, sources: Sequence[tuple[Image, Face]]) -> MeshSource:
        """Pick the most frontal source face that has landmarks and precompute what every swap needs."""
        for img, _ in sources:
            _check_image(img)
        candidates = [(img, f) for img, f in sources if f.landmarks is not None and len(f.landmarks) >= 468]
        candidates = [(img, f) for img, f in candidates if f.landmarks.shape[1] >= 3]
        if not candidates:
            raise NoSourceFaceError("no source face with face-mesh landmarks to swap from")
        image, face = max(candidates, key=lambda c: (round(frontality(c[1].landmarks), 2), c[1].size))
        lm = np.asarray(face.landmarks, dtype=np.float32)[: mesh.N_LANDMARKS, :3]
        rect = _roi(lm[:, :2], image.shape, 0.1)
        if rect is None:
            raise NoSourceFaceError("the source face lies outside its image")
        x0, y0, x1, y1 = rect
        crop = np.ascontiguousarray(image[y0:y1, x0:x1])
        lm = lm - np.array([x0, y0, 0], dtype=np.float32)
        pts = np.ascontiguousarray(lm[:, :2])
        outline = blend.polygon_mask(crop.shape, [cv2.convexHull(pts).reshape(-1, 2)])
        # The alpha channel marks the source's own skin: hair over its forehead stays out of the swap.
        own = 255 - masks.hair(blend.to_lab(crop), pts, outline, _extent(pts))
        levels = [(np.dstack([crop, own]), pts)]
        while _extent(levels[-1][1]) / 2 >= _MIN_LEVEL_SIZE and min(levels[-1][0].shape[:2]) >= 16:
            img, p = levels[-1]
            # pyrDown maps pixel centre x to (x - 0.5) / 2: keep the points on the same features.
            levels.append((cv2.pyrDown(img), ((p + 0.5) / 2 - 0.5).astype(np.float32)))
        ear = min(mesh.eye_aspect_ratio(lm, "right"), mesh.eye_aspect_ratio(lm, "left"))
        face_mask = blend.polygon_mask(crop.shape, [pts[list(mesh.FACE_OVAL)]]) & own
        return MeshSource(
            image=crop, landmarks=lm, face=face, levels=tuple(levels),
            colours=tuple(np.ascontiguousarray(img[..., :3]) for img, _ in levels),
            visible=mesh.facing(lm, self._tris) >= MIN_FACING,
            eyes_open=ear >= (EYE_CLOSED_RATIO + EYE_OPEN_RATIO) / 2,
            mouth_open=mesh.mouth_open_ratio(lm),
            gamut=_gamut(blend.to_lab(crop), face_mask, pts, _extent(pts)),
        )

    def swap_many(self, image: Image, faces: Sequence[Face], source: MeshSource) -> Image:
        """A new image with every face in ``faces`` replaced (one after another, one frame copy)."""
        return self.swap_batch([image], [faces], source)[0]

    def swap_batch(
        self, images: Sequence[Image], faces: Sequence[Sequence[Face]], source: MeshSource
    ) -> list[Image]:
        """Consecutive frames of a video, frame by frame. A tracked face (``track_id``) is analysed at
        work scale (where to paint, how to recolour) on one frame and that analysis is carried along
        the mesh's motion to the next ``CARRIED_FRAMES`` frames of the batch (see ``_carried``): a
        frame later the face's colour and light have not changed, and the analysis is about 40 % of the
        swap's cost. Batches are the engine's, so a frame comes out the same whichever thread renders it."""
        out_images = []
        looks: dict[int, _Look] = {}
        for image, frame_faces in zip(images, faces, strict=True):
            _check_image(image)
            out = image.copy()
            kept: dict[int, _Look] = {}
            for face in frame_faces:
                previous = looks.get(face.track_id) if face.track_id is not None else None
                look = self._swap_into(out, face, source, previous)
                if look is not None and face.track_id is not None and look.age < CARRIED_FRAMES:
                    kept[face.track_id] = look
            looks = kept
            out_images.append(out)
        return out_images

    def swap(self, image: Image, face: Face, source: MeshSource) -> Image:
        """A new image with ``face`` replaced by the source face; only a rectangle around it changes."""
        return self.swap_many(image, [face], source)

    def _swap_into(self, out: Image, face: Face, source: MeshSource,
                   previous: _Look | None = None) -> _Look | None:
        """Replace ``face`` in ``out`` in place (only a rectangle around it is read and written); the
        face's work-scale analysis, or None if nothing was painted (see ``_paint``)."""
        if face.landmarks is None or len(face.landmarks) < mesh.N_LANDMARKS or face.landmarks.shape[1] < 3:
            raise UsageError("the mesh swapper needs face-mesh landmarks (use the mesh detector)")
        lm = np.asarray(face.landmarks, dtype=np.float32)[: mesh.N_LANDMARKS]
        shaped = self._shaped(lm, source)
        # The target first takes the new shape (its hair, ears, jaw and neck following the moved
        # outline), then the source face is painted onto it.
        follow = self._follow_shape(out, lm, shaped, previous.follow if previous is not None else None)
        look = self._paint(out, np.column_stack([shaped, lm[:, 2]]), source, previous)
        return look if look is None else replace(look, follow=follow)

    def _follow_shape(self, out: Image, lm: NDArray[np.float32], shaped: NDArray[np.float32],
                      previous: _Follow | None = None) -> _Follow | None:
        """Warp ``out`` in place so the target's face has the ``shaped`` landmarks (see
        ``_follow_field``). With ``previous`` (the warp made for the same face a frame or two before),
        that warp is carried along the face's motion (``_Follow.carry``) instead of made afresh, if it
        then still shifts every landmark to within FOLLOW_TOLERANCE px of this frame's own.

        Returns the warp to carry to the next frame: ``previous`` when it was carried (a warp is always
        carried from the frame it was made on), the new one, or None when nothing moved or the image
        border cut the new one's rectangle."""
        # The rectangle takes in the band around the face where jaw, neck and hair follow the outline.
        rect = _roi(np.concatenate([lm[:, :2], shaped]), out.shape, _ROI_PAD + WARP_ZONE)
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        full = (x1 - x0, y1 - y0)
        scale = min(1.0, WORK_SIZE / _extent(lm[:, :2]))
        small = (max(round(full[0] * scale), 8), max(round(full[1] * scale), 8))
        ratio = np.array([small[0] / full[0], small[1] / full[1]], dtype=np.float32)
        origin = np.array([x0, y0], dtype=np.float32)
        moves = lm[:, :2] - shaped  # the warp takes the pixel at each shaped landmark from the target's
        if float(np.abs(moves[list(mesh.FACE_OVAL)] * ratio).max()) < 0.05:
            return None  # the outline stays (under a 20th of a work pixel)
        shift = previous.carry(shaped, moves, origin, ratio, small) if previous is not None else None
        follow = previous
        if shift is None:
            pts = (lm[:, :2] - origin + 0.5) * ratio - 0.5
            drawn_pts = (shaped - origin + 0.5) * ratio - 0.5
            ids = self._raster(small, drawn_pts, lm[:, 2])
            back = self._remap(ids, drawn_pts, pts)
            shift = _follow_field(ids, back, drawn_pts, pts, _extent(pts))
            # A rectangle the image border cut holds only part of the band: not carried (what lay
            # beyond the border would come into view as the face moves in).
            inside = x0 > 0 and y0 > 0 and x1 < out.shape[1] and y1 < out.shape[0]
            follow = _Follow(shaped, moves, origin, ratio, shift) if inside else None
        out[y0:y1, x0:x1] = _warp_following(out[y0:y1, x0:x1], shift, ratio)
        return follow

    def _paint(self, out: Image, lm: NDArray[np.float32], source: MeshSource,
               previous: _Look | None = None) -> _Look | None:
        """Paint the source face onto the target face with landmarks ``lm`` (already shaped); return
        what the work-scale analysis found (None if nothing was painted). With ``previous`` (the same
        face's look in the frame before), that look is carried along the mesh instead of analysing
        this frame afresh, unless the face changed too much in between (see ``_carries``)."""
        rect = _roi(lm[:, :2], out.shape, _ROI_PAD)
        if rect is None:
            return None
        x0, y0, x1, y1 = rect
        roi = out[y0:y1, x0:x1]  # read until the final blend, which writes the rectangle back
        full = (x1 - x0, y1 - y0)
        # Masks, statistics and smooth colour fields are computed at a work scale where the face is
        # about WORK_SIZE px; only the warp itself and the final blend run at full resolution.
        scale = min(1.0, WORK_SIZE / _extent(lm[:, :2]))
        small = (max(round(full[0] * scale), 8), max(round(full[1] * scale), 8))
        # Pixel centres map as cv2.resize maps them, so maps computed here upsample exactly.
        ratio = np.array([small[0] / full[0], small[1] / full[1]], dtype=np.float32)
        origin = np.array([x0, y0], dtype=np.float32)
        pts = (lm[:, :2] - origin + 0.5) * ratio - 0.5  # the (shaped) target: where the source's features go
        drawn_pts = pts  # (the same points: the target already has the source's shape)
        size = _extent(pts)
        level = self._level(source, _extent(lm[:, :2]))
        level_img, level_pts = source.levels[level]
        # A closed target mouth draws no mouth opening: the source's teeth would show as a thin line.
        mouth_open = mesh.mouth_open_ratio(pts) > MOUTH_CLOSED_RATIO
        ids, map_x, map_y = self._maps(small, drawn_pts, lm[:, 2], level_pts, mouth_open)
        warped_s = cv2.remap(level_img, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        if previous is not None and _carries(previous, pts, lm[:, :2]):
            look: _Look | None = _carried(previous, self._remap(ids, pts, previous.points), ids >= 0, pts,
                                          lm[:, :2])
        else:
            roi_s = roi if scale == 1.0 else cv2.resize(roi, small, interpolation=cv2.INTER_AREA)
            look = self._analyse(roi_s, ids, warped_s, pts, size, source, lm[:, :2])
        if look is None:
            return None
        transfer, skin_hue, floor, field = look.transfer, look.skin_hue, look.floor, look.field
        local = look.local
        kept = self._kept(ids.shape, pts, size, source)
        alpha = look.alpha if kept is None else look.alpha * (1.0 - kept)
        # The eyes keep their own colour: a skin-to-skin shift turns the whites grey or blue.
        eyes = blend.polygon_mask(ids.shape, [drawn_pts[list(i)] for i in (mesh.RIGHT_EYE, mesh.LEFT_EYE)])
        eyes_w = 1.0 - blend.fade_out(eyes, 0.0, max(1.5, 0.02 * size))
        # The source's own highlights (a shiny nose under another light) must not outshine the target's
        # skin nearby (``local``: its skin, not its brows, lashes or eye sockets, or the source's lids
        # and brow ridge would be dimmed to grey under them).
        weights = np.dstack([alpha, eyes_w, local])

        # Full resolution: the same warp sampled densely, the colour maps upsampled; the colour work
        # runs on the rectangle where the face is painted, the rest of the region takes ``roi`` as is.
        if scale < 1.0:
            map_x = cv2.resize(map_x, full, interpolation=cv2.INTER_LINEAR)
            map_y = cv2.resize(map_y, full, interpolation=cv2.INTER_LINEAR)
            field = cv2.resize(field, full, interpolation=cv2.INTER_LINEAR)
            weights = cv2.resize(weights, full, interpolation=cv2.INTER_LINEAR)
        painted = blend.mask_rect(np.where(weights[..., 0] > 0, 255, 0).astype(np.uint8), margin=1)
        if painted is None:
            return None
        px, py, pw, ph = painted
        part = (slice(py, py + ph), slice(px, px + pw))
        if scale < 1.0:
            warped = cv2.remap(source.colours[level], map_x[part], map_y[part], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT)
        else:
            warped = np.ascontiguousarray(warped_s[part][..., :3])
        field, weights, target = field[part], weights[part], roi[part]
        alpha, eyes_w, local = weights[..., 0], weights[..., 1], weights[..., 2:]
        base = blend.to_lab(warped)
        lab = blend.recolour(base, transfer, field, skin_hue)
        eyes_rect = blend.mask_rect(np.where(eyes_w > 0, 255, 0).astype(np.uint8))
        if eyes_rect is not None:  # (the rectangle around the eyes, not the whole face)
            ex, ey, ew, eh = eyes_rect
            near = (slice(ey, ey + eh), slice(ex, ex + ew))
            lab[near] -= (lab[near] - base[near]) * (eyes_w[near][..., None] * _EYE_KEEP)
        # Dim what outshines the target's skin nearby (a soft knee) and give it that skin's hue: a
        # white glint dimmed alone would turn grey.
        over = np.maximum(lab[..., 0] - local[..., 0] - HIGHLIGHT_MARGIN, 0.0) * (1.0 - eyes_w)
        bright = over > 0
        if bright.any():
            dim = over[bright]
            shine = lab[bright]
            shine[:, 0] -= 0.75 * dim
            hue = np.minimum(dim * (1.0 / HIGHLIGHT_MARGIN), 1.0)[:, None]
            shine[:, 1:] += (local[bright][:, 1:] - shine[:, 1:]) * hue
            lab[bright] = shine
        if floor is not None:
            blend.apply_chroma_floor(lab, floor, 1.0 - eyes_w)
        if self.options.color_transfer:
            # The grain is read where the warp reads the source's texture, scaled to about one noise
            # sample per output pixel: it sticks to the skin as the face moves, turns or comes closer
            # (noise drawn afresh, or slid under a turning face, would flicker where the input does not).
            if look.grain is None:  # measured on the frame the analysis is made on, then carried
                look = replace(look, grain=self._missing_grain(target, lab[..., 0], alpha))
            if look.grain >= 1.0:  # below that, not visible on the 8-bit scale
                per_pixel = np.float32(2.0**level * _spread(lm[:, :2]) / _spread(source.levels[0][1]))
                at = ((map_x[part] + 0.5) * per_pixel, (map_y[part] + 0.5) * per_pixel)
                # White noise of std k keeps 0.87 k once its 1-px blur is taken away (1 - 2/(2 pi) +
                # 1/(4 pi)). Nearest samples: white noise stays white (interpolated, its strength would
                # vary in bands).
                noise = cv2.remap(self._noise, at[0], at[1], cv2.INTER_NEAREST, borderMode=cv2.BORDER_WRAP)
                lab[..., 0] += noise * np.float32(look.grain / 0.87)
        roi[part] = blend.alpha_blend(target, blend.from_lab(lab), np.ascontiguousarray(alpha))
        return look

    def _analyse(
        self, roi_s: Image, ids: NDArray[np.int32], warped_s: NDArray[np.uint8], pts: NDArray[np.float32],
        size: float, source: MeshSource, where: NDArray[np.float32],
    ) -> _Look | None:
        """The work-scale analysis of one face: where the swap may paint and how the source's colour
        becomes the target's (``roi_s``: the target's rectangle at work scale, ``warped_s``: the source
        warped onto it, ``pts``: the shaped landmarks there, ``where``: in the image). None when there
        is nowhere to paint."""
        target_lab = blend.to_lab(roi_s)
        # Where the swap may paint: mesh triangles the source shows squarely, minus hair on either face.
        drawn = np.zeros(ids.shape, np.uint8)
        inside = ids >= 0
        drawn[inside] = np.where(source.visible[ids[inside]], 255, 0)
        drawn = blend.fill_holes(drawn)  # keep interior folds (the sides of the nose)
        drawn[warped_s[..., 3] < 128] = 0
        drawn[masks.hair(target_lab, pts, drawn, size) > 0] = 0  # the target's hair stays
        region = blend.erode(blend.fill_holes(drawn), max(1, round(EDGE_TRIM * size)))
        if not np.any(region):
            return None

        skin = masks.bare_skin(region, pts, size)
        if np.count_nonzero(skin) <= 32:
            skin = region
        # The target's plain skin (not its brows, lashes, hair or eye sockets) and its colour nearby.
        target_distance = blend.colour_distance(target_lab, skin)
        plain = skin & np.where(target_distance <= PLAIN_SKIN, 255, 0).astype(np.uint8)
        local = blend.masked_blur(target_lab, plain if np.count_nonzero(plain) > 32 else skin,
                                  max(1.0, 0.03 * size))
        # What the face's edge may meet: skin, and no feature darker or brighter than the skin beside
        # it (a brow's tail, grey hair at a temple, a lash line the edge runs through).
        detail = np.abs(target_lab[..., 0] - local[..., 0])
        edge_skin = (target_distance <= EDGE_SKIN) & (detail <= EDGE_DETAIL)
        transfer, field, skin_hue = self._colour(
            warped_s, target_lab, region, skin, plain, np.where(edge_skin, 255, 0).astype(np.uint8), size)
        floor = self._floor(target_lab, region, skin, pts, size, source)
        alpha = blend.feather(region, max(2.0, FEATHER * size))
        # The target's own brows must not show through a soft edge beside the source's (double
        # brows, when hair cuts the region just above them): wherever the swap may paint, they are
        # covered in full.
        brows = [pts[list(mesh.RIGHT_EYEBROW)], pts[list(mesh.LEFT_EYEBROW)]]
        cover = blend.polygon_mask(region.shape, brows, grow=max(2, round(BROW_COVER * size))) & drawn
        alpha = np.maximum(alpha, blend.feather(cover, max(1.5, 0.5 * BROW_COVER * size)))
        return _Look(pts, _extent(where), where.mean(axis=0), transfer, skin_hue, floor, field, alpha, local)

    @staticmethod
    def _missing_grain(roi: Image, lightness: NDArray[np.float32], alpha: NDArray[np.float32]) -> float:
        """How much grain (std, LAB lightness) a smoother source face (stretched, retouched) lacks
        against the target: the swap adds that much noise.

        Fine detail is measured as what a 1-px blur removes, on the face's opaque part, robustly (the
        target's own eyes and wrinkles are not grain); only the missing part is added, so a source as
        sharp as the target gets none. ``lightness`` is the face as it will be pasted (recoloured: a
        face made lighter has its own detail scaled up with it). The noise is read from a fixed,
        repeating tile where the warp reads the source's texture, so it moves with the face and a still
        face keeps the same grain from frame to frame.
        """
        inner = alpha[::2, ::2] > 0.9  # every other pixel is plenty for two statistics
        if np.count_nonzero(inner) < 64:
            return 0.0
        target = cv2.cvtColor(roi, cv2.COLOR_BGR2LAB)[..., 0].astype(np.float32)
        fine_t = _robust_std((target - cv2.GaussianBlur(target, (0, 0), 1.0))[::2, ::2][inner])
        fine_s = _robust_std((lightness - cv2.GaussianBlur(lightness, (0, 0), 1.0))[::2, ::2][inner])
        return float(np.sqrt(max(fine_t**2 - fine_s**2, 0.0)))

    def _colour(
        self, warped: NDArray[np.uint8], target_lab: blend.Lab, region: NDArray[np.uint8],
        skin: NDArray[np.uint8], target_plain: NDArray[np.uint8], edge_skin: NDArray[np.uint8], size: float,
    ) -> tuple[blend.ColourGain, NDArray[np.float32], NDArray[np.float32]]:
        """The global colour change and a smooth field of per-pixel factors that make the warped face
        the target's colour (statistics), light (broad shading) and edge (Poisson).

        Both are multiplicative (see ``blend.gain_field``): dark and grey features of the source keep
        their darkness and stay grey instead of being pushed into blue by the skin's correction.
        """
        lab = blend.to_lab(np.ascontiguousarray(warped[..., :3]))
        transfer = blend.ColourGain()
        additive = np.zeros_like(lab)
        sigma = max(2.0, RELIGHT_SIGMA * size)
        skin_hue = lab[skin > 0].mean(axis=0)
        if self.options.color_transfer and np.count_nonzero(skin) > 32:
            transfer = blend.colour_match(lab, skin, target_lab, skin)
            lab = transfer.apply(lab)  # the skin's change: all the statistics below look at
            # Light is read where both faces show plain skin: the target's brows, lashes and deep eye
            # sockets (and the source's) around the feature masks are not light, and read as light
            # they would paint the source's lids grey.
            plain = target_plain.copy()
            plain[blend.colour_distance(lab, skin) > PLAIN_SKIN] = 0
            if np.count_nonzero(plain) > 32:
                skin = plain
            additive = blend.relight_field(lab, target_lab, skin, sigma, strength=(1.0, 1.0, 1.0))
        # The source's skin colour, smooth: the colour the corrections are meant for. Poisson is solved
        # on it, not on the face itself, over the whole region (no holes): a brow, the dark of a kept
        # mouth or eye on the region's edge would otherwise act as boundary values and bleed a bright
        # or dark membrane across the face.
        # The edge takes its values from the target's skin only (``edge_skin``): a brow's tail or grey
        # hair that the region's edge runs through would spread a grey smudge into the face.
        pivot = blend.masked_blur(lab, skin, sigma)
        additive += blend.poisson_field(pivot + additive, target_lab, region, max_side=POISSON_SIDE,
                                        trusted=edge_skin)
        return transfer, blend.gain_field(additive, pivot), skin_hue

    def _floor(
        self, target_lab: blend.Lab, region: NDArray[np.uint8], skin: NDArray[np.uint8],
        points: NDArray[np.float32], size: float, source: MeshSource,
    ) -> blend.ChromaFloor | None:
        """The least colour a swapped pixel may have at its lightness: no greyer or bluer than what
        the target's face or the source's own shows there (eyes and mouth opening aside)."""
        if not self.options.color_transfer or np.count_nonzero(skin) <= 32:
            return None
        face = region & ~_openings(region.shape, points, size)
        return blend.chroma_floor(target_lab, _frame(skin, points, size), face, source.gamut)

    def _shaped(self, landmarks: NDArray[np.float32], source: MeshSource) -> NDArray[np.float32]:
        """Target landmarks (x, y) with the inner face moved part of the way to the source's shape.

        The source mesh is posed like the target's (a 3-D similarity, so a turned head compares with
        a turned head). The inner face moves by SHAPE_BLEND, the outline by OUTLINE_BLEND (the target's
        jaw, hair and neck follow it, see ``_follow``); the lips stay where they are so the kept mouth
        still fits, and the move fades in over a few mesh rings from them.
        """
        pts = landmarks[:, :2].astype(np.float64)
        posed = mesh.pose_like(source.landmarks.astype(np.float64), landmarks[:, :3].astype(np.float64))
        outline = OUTLINE_BLEND * frontality(landmarks) ** OUTLINE_TURN_POWER
        weight = self._inner_weight + outline * self._outline_weight
        moved = pts + weight[:, None] * (posed[:, :2] - pts)
        return moved.astype(np.float32)

    def _level(self, source: MeshSource, size: float) -> int:
        """The smallest pyramid level whose face is still about as large as a ``size`` px target."""
        return max(i for i, (_, p) in enumerate(source.levels) if i == 0 or _extent(p) >= 0.9 * size)

    def _raster(
        self, shape: tuple[int, int], points: NDArray[np.float32], depth: NDArray[np.float32],
        mouth: bool = True,
    ) -> NDArray[np.int32]:
        """Triangle id drawn at each pixel of a (width, height) ``shape`` (-1 outside the mesh)."""
        order = np.argsort(-depth[self._tris].mean(axis=1))  # far (large z) first, near last
        if not mouth:
            order = order[(order < mesh.MOUTH_FILL.start) | (order >= mesh.MOUTH_FILL.stop)]
        return triangle_ids(shape, points, self._tris, order)

    def _remap(
        self, ids: NDArray[np.int32], points: NDArray[np.float32], to_points: NDArray[np.float32]
    ) -> NDArray[np.float32]:
        """(H, W, 2): where each pixel of the mesh drawn at ``points`` lies on the mesh at ``to_points``
        (piecewise affine per triangle; meaningless where ``ids`` < 0)."""
        h, w = ids.shape
        coeffs = mesh.triangle_affines(points, to_points, self._tris).astype(np.float32)
        ys, xs = np.indices((h, w), dtype=np.float32)
        c = coeffs[np.maximum(ids, 0)]  # (H, W, 6)
        return np.dstack([c[..., 0] * xs + c[..., 1] * ys + c[..., 2],
                          c[..., 3] * xs + c[..., 4] * ys + c[..., 5]])

    def _maps(
        self, shape: tuple[int, int], points: NDArray[np.float32], depth: NDArray[np.float32],
        source_points: NDArray[np.float32], mouth: bool = True,
    ) -> tuple[NDArray[np.int32], NDArray[np.float32], NDArray[np.float32]]:
        """Triangle id drawn at each pixel of a (width, height) ``shape`` and the remap into the source."""
        ids = self._raster(shape, points, depth, mouth)
        remap = self._remap(ids, points, source_points)
        map_x, map_y = np.ascontiguousarray(remap[..., 0]), np.ascontiguousarray(remap[..., 1])
        map_x[ids < 0] = -1.0
        return ids, map_x, map_y

    def _kept(
        self, shape: tuple[int, ...], points: NDArray[np.float32], size: float, source: MeshSource
    ) -> NDArray[np.float32] | None:
        """How much of each pixel stays the target's own (open mouth, closing eyes), 0..1, or None.

        Exactly 1 inside the mouth opening or eye, fading out over the lips and lids. The amount
        follows how open they are, so a blink or a word fades the target's own in and out over a few
        frames instead of switching.
        """
        parts: list[tuple[float, tuple[int, ...]]] = []
        if self.options.keep_mouth:
            # When either mouth is open: its teeth and tongue when the target speaks, the line where
            # its lips meet when the source smiles with its teeth.
            opening = max(mesh.mouth_open_ratio(points), source.mouth_open)
            parts.append((_ramp(opening, MOUTH_CLOSED_RATIO, MOUTH_OPEN_RATIO), mesh.LIPS_INNER))
        if self.options.keep_eyes:
            for side, eye in (("right", mesh.RIGHT_EYE), ("left", mesh.LEFT_EYE)):
                ear = mesh.eye_aspect_ratio(points, side)
                closed = 1.0 if not source.eyes_open else _ramp(-ear, -EYE_OPEN_RATIO, -EYE_CLOSED_RATIO)
                parts.append((closed, eye))
        keep: NDArray[np.float32] | None = None
        for amount, contour in parts:
            if amount <= 0.0:
                continue
            inside = blend.polygon_mask(shape, [points[list(contour)]])
            weight = amount * (1.0 - blend.fade_out(inside, 1.0 + 0.01 * size, max(1.5, 0.015 * size)))
            keep = weight if keep is None else np.maximum(keep, weight)
        return keep


def _openings(shape: tuple[int, ...], points: NDArray[np.float32], size: float) -> NDArray[np.uint8]:
    """0/255 mask of the eyes and the mouth opening, grown a little (lashes and lid shadows are the eye's)."""
    openings = [points[list(i)] for i in (mesh.RIGHT_EYE, mesh.LEFT_EYE, mesh.LIPS_INNER)]
    return blend.polygon_mask(shape, openings, grow=max(1, round(0.03 * size)))


def _gamut(
    lab: blend.Lab, face: NDArray[np.uint8], points: NDArray[np.float32], size: float
) -> NDArray[np.float32]:
    """``blend.face_gamut`` of a face: its bare skin is the frame, eyes and mouth opening left out."""
    skin = masks.bare_skin(face, points, size)
    skin = _frame(skin if np.count_nonzero(skin) > 32 else face, points, size)
    return blend.face_gamut(lab, skin, face & ~_openings(face.shape, points, size))


def _frame(skin: NDArray[np.uint8], points: NDArray[np.float32], size: float) -> NDArray[np.uint8]:
    """The skin a face's colours are read against (lightness relative to it, chroma along its hue):
    the cheeks and nose ridge where ``skin`` has them (the whole bare skin's median is darker on a
    strongly shaded face, and the target's, the source's and the swapped face's would differ)."""
    samples = masks.skin_samples(skin.shape, points, size) & skin
    return samples if np.count_nonzero(samples) > 32 else skin


def _check_image(image: Image) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise UsageError(f"expected a BGR uint8 image, got {image.dtype} {image.shape}")


def _ramp(value: float, low: float, high: float) -> float:
    """0 at or below ``low``, 1 at or above ``high``, linear in between."""
    return float(np.clip((value - low) / (high - low), 0.0, 1.0))


@dataclass(frozen=True, eq=False)
class _Look:
    """What the work-scale analysis of one face in one frame found (``MeshSwapper._analyse``), on the
    face's rectangle at work scale."""

    points: NDArray[np.float32]
    """The (shaped) landmarks on the rectangle."""
    size: float
    """The face's size in the image (px)."""
    centre: NDArray[np.float32]
    """The landmarks' centre in the image."""
    transfer: blend.ColourGain
    skin_hue: NDArray[np.float32]
    floor: blend.ChromaFloor | None
    field: NDArray[np.float32]
    """The per-pixel colour factors (``blend.gain_field``)."""
    alpha: NDArray[np.float32]
    """Where the swap paints, before the frame's own kept mouth and eyes (0 outside the mesh)."""
    local: NDArray[np.float32]
    """The target's plain skin nearby (LAB)."""
    age: int = 0
    """Frames it has been carried over since the analysis."""
    grain: float | None = None
    """The grain the source lacks (``MeshSwapper._missing_grain``), measured at full resolution on the
    frame of the analysis; None until then."""
    follow: _Follow | None = None
    """The warp that made the face's surroundings follow its shaped outline on this frame, as made
    on this frame or the one it was carried from (``_follow_shape``); None: none to carry."""


def _follow_field(ids: NDArray[np.int32], back: NDArray[np.float32], shaped: NDArray[np.float32],
                  target: NDArray[np.float32], size: float) -> NDArray[np.float32]:
    """The work-scale shift (H, W, 2; work px) that warps the target's face to the shaped outline and
    makes the hair, ears, jaw and neck around it follow over a band of WARP_ZONE face sizes.

    Inside the mesh the warp is the mesh's own (piecewise affine, shaped -> target: ``back``); outside,
    each pixel takes the shift of the nearest mesh pixel, smoothed and fading to exactly nothing at the
    band's outer edge, so the background beyond it keeps every pixel.
    """
    h, w = ids.shape
    inside = ids >= 0
    grid = np.dstack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)))
    # Inside a triangle the shift is a blend of its corners' shifts, so it lies within the range of
    # the landmarks' shifts. A pixel the rasteriser gives a triangle from just outside it extrapolates
    # (at most half the triangle's height for a sliver, ``SLIVER_REACH``), and the outside would spread
    # any overshoot into a smear that comes and goes with sub-pixel changes of the landmarks: clamp to
    # the corners' range.
    moves = target - shaped
    shift = np.clip(back - grid, moves.min(axis=0), moves.max(axis=0))
    shift = np.where(inside[..., None], shift, 0.0).astype(np.float32)
    # Nearest mesh pixel for every pixel outside the mesh: the shift continues across the outline.
    distance, labels = cv2.distanceTransformWithLabels(
        np.where(inside, 0, 255).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    seeds = shift[inside]  # row-major, as the labels of the zero pixels are numbered
    lookup = np.zeros((labels.max() + 1, 2), np.float32)
    lookup[labels[inside]] = seeds
    outside = lookup[labels]
    sigma = max(1.0, 0.05 * size)
    outside = cv2.GaussianBlur(outside, (0, 0), sigmaX=sigma)
    zone = max(2.0, WARP_ZONE * size)
    t = np.clip(1.0 - distance / zone, 0.0, 1.0)
    fade = (t * t * (3.0 - 2.0 * t))[..., None]
    return np.where(inside[..., None], shift, outside * fade)


def _warp_following(roi: Image, shift: NDArray[np.float32], ratio: NDArray[np.float32]) -> Image:
    """``roi`` warped by the work-scale ``shift`` (``_follow_field``), at full resolution: a copy."""
    # The shift upsamples linearly; pixels that do not move (beyond the band, where the shift and its
    # neighbours are exactly 0) get whole-pixel coordinates, which the bilinear remap copies bit for bit.
    full = (roi.shape[1], roi.shape[0])
    if shift.shape[1::-1] != full:
        shift = cv2.resize(shift * (1.0 / ratio).astype(np.float32), full, interpolation=cv2.INTER_LINEAR)
    ys, xs = np.indices((full[1], full[0]), dtype=np.float32)
    return cv2.remap(roi, xs + shift[..., 0], ys + shift[..., 1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


@dataclass(frozen=True, eq=False)
class _Follow:
    """The warp that makes a target's surroundings follow the shaped outline (``_follow_field``), as
    made on one frame."""

    shaped: NDArray[np.float32]
    """The shaped landmarks (image px) it was made for."""
    moves: NDArray[np.float32]
    """Target minus shaped landmarks (image px): the shift at each shaped landmark."""
    origin: NDArray[np.float32]
    """The image position of its rectangle."""
    ratio: NDArray[np.float32]
    """Work px per image px, x and y."""
    shift: NDArray[np.float32]
    """(H, W, 2) shift on the rectangle at work scale (work px)."""

    def carry(self, shaped: NDArray[np.float32], moves: NDArray[np.float32], origin: NDArray[np.float32],
              ratio: NDArray[np.float32], small: tuple[int, int]) -> NDArray[np.float32] | None:
        """This warp's shift moved, turned and scaled as the face did (the similarity that best maps
        its shaped landmarks onto ``shaped``), on the rectangle at ``origin`` with ``ratio`` and work
        size ``small``; None when that leaves a landmark's shift more than FOLLOW_TOLERANCE px from
        ``moves`` (the jaw opened, the head turned: the shape changed, not only the pose)."""
        similarity = estimate_similarity(self.shaped, shaped)
        linear, offset = similarity[:, :2], similarity[:, 2]
        if float(np.linalg.norm(moves - self.moves @ linear.T, axis=1).max()) > FOLLOW_TOLERANCE:
            return None
        # New work px -> image px -> the image px it was before -> its work px.
        to_image = np.diag(1.0 / ratio.astype(np.float64))
        back = np.linalg.inv(linear)
        m = np.diag(self.ratio.astype(np.float64)) @ back @ to_image
        c = (np.diag(self.ratio.astype(np.float64)) @ (back @ ((0.5 / ratio - 0.5) + origin - offset)
                                                        - self.origin + 0.5) - 0.5)
        # Beyond the rectangle it was made on (which the image border did not cut), 0: the band has
        # faded out there (replicated, so rounding at the edge cannot tear the warp).
        shift = cv2.warpAffine(self.shift, np.column_stack([m, c]), small,
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        # Its vectors turn and scale with the face, in this rectangle's work px.
        turn = np.diag(ratio.astype(np.float64)) @ linear @ np.diag(1.0 / self.ratio.astype(np.float64))
        return cv2.transform(shift, turn).astype(np.float32)


def _carries(previous: _Look, points: NDArray[np.float32], where: NDArray[np.float32]) -> bool:
    """Whether ``previous`` may be carried to a face with ``points`` on its work-scale rectangle and
    ``where`` in the image: it has not jumped, grown or shrunk, or changed shape much (CARRY_MOVE)."""
    size = _extent(where)
    if abs(math.log(size / max(previous.size, 1e-6))) > CARRY_MOVE:
        return False
    if float(np.linalg.norm(where.mean(axis=0) - previous.centre)) > 2 * CARRY_MOVE * size:
        return False
    return float(np.median(np.linalg.norm(points - previous.points, axis=1))) <= CARRY_MOVE * _extent(points)


def _carried(previous: _Look, back: NDArray[np.float32], inside: NDArray[np.bool_],
             points: NDArray[np.float32], where: NDArray[np.float32]) -> _Look:
    """``previous`` carried onto this frame's rectangle: inside the mesh each pixel takes the value at
    ``back``, where the same point of the face was (piecewise affine, per triangle); outside it the
    smooth fields follow the face's centre and size, and nothing is painted."""
    h, w = inside.shape
    ys, xs = np.indices((h, w), dtype=np.float32)
    shrink = np.float32(_extent(previous.points) / max(_extent(points), 1e-6))
    centre, centre_before = points.mean(axis=0), previous.points.mean(axis=0)
    map_x = np.where(inside, back[..., 0], (xs - centre[0]) * shrink + centre_before[0]).astype(np.float32)
    map_y = np.where(inside, back[..., 1], (ys - centre[1]) * shrink + centre_before[1]).astype(np.float32)

    def carry(values: NDArray[np.float32]) -> NDArray[np.float32]:
        return cv2.remap(values, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    return _Look(points, _extent(where), where.mean(axis=0), previous.transfer, previous.skin_hue,
                 previous.floor, carry(previous.field), carry(previous.alpha) * inside, carry(previous.local),
                 previous.age + 1, previous.grain)


def _robust_std(values: NDArray[np.float32]) -> float:
    """Standard deviation estimated from the median absolute deviation (ignores sparse edges)."""
    return float(1.4826 * np.median(np.abs(values - np.median(values))))


def _extent(points: NDArray[np.floating]) -> float:
    """Geometric mean of a point set's width and height (a face size that ignores the box detector)."""
    span = points.max(axis=0) - points.min(axis=0)
    return float(np.sqrt(max(span[0], 1.0) * max(span[1], 1.0)))


def _spread(points: NDArray[np.floating]) -> float:
    """Root-mean-square distance of the points from their centre: a size that does not change as the
    face rolls (a box's does)."""
    return float(np.sqrt(np.mean(np.sum((points - points.mean(axis=0)) ** 2, axis=1))))


def _roi(points: NDArray[np.float32], shape: tuple[int, ...], pad: float) -> tuple[int, int, int, int] | None:
    """x0, y0, x1, y1 of the points' box grown by ``pad`` face sizes plus 4 px, clipped; None if tiny."""
    margin = pad * _extent(points) + 4
    x0, y0 = np.floor(points.min(axis=0) - margin).astype(int)
    x1, y1 = np.ceil(points.max(axis=0) + margin).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, shape[1]), min(y1, shape[0])
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None
