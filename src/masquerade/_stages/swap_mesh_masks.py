"""Face regions for the mesh swapper, drawn from the 468 landmarks: hair over the face, bare skin."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

from masquerade._stages import blend
from masquerade._stages.blend import Lab
from masquerade.geometry import mesh

HAIR_DISTANCE = 1.4
"""Colour distance from the cheeks (see ``blend.colour_distance``) above which the edge is not skin."""
EDGE_BAND = 0.08
"""Width of the band along the face outline searched for hair (fraction of the face size)."""


def hair(lab: Lab, points: NDArray[np.float32], region: NDArray[np.uint8], size: float) -> NDArray:
    """0/255 mask of what covers the face from its edge and is not skin: hair, a hat, a beard.

    Searched over the forehead and a band along the face's outline only: further in, shadows and
    smile lines look as unlike the cheeks as hair does, and cutting them out would keep the target's
    own face.
    """
    samples = skin_samples(region.shape, points, size, min_radius=2)
    sigma = max(1.0, 0.012 * size)
    distance = cv2.GaussianBlur(blend.colour_distance(lab, samples & region), (0, 0), sigmaX=sigma)
    # Along the outline, shading is deeper (the jaw's shadow, a cheek turning away): count lightness
    # only when it differs a lot, and rely on hue there.
    shaded = cv2.GaussianBlur(blend.colour_distance(lab, samples & region, floor=(60.0, 6.0, 6.0)),
                              (0, 0), sigmaX=sigma)
    forehead = blend.polygon_mask(region.shape, [points[list(mesh.FOREHEAD)]])
    brows = [points[list(mesh.RIGHT_EYEBROW)], points[list(mesh.LEFT_EYEBROW)]]
    brow_zone = blend.polygon_mask(region.shape, brows, grow=max(1, round(0.03 * size)))
    forehead[brow_zone > 0] = 0
    oval = blend.polygon_mask(region.shape, [points[list(mesh.FACE_OVAL)]])
    # The band along the outline, and the temples beside the brows' tails: a lock of hair at the side
    # of the head and the shadow it casts reach in there, further than the band (a dark stroke from
    # the brow to the eye's corner once pasted onto another face).
    temples = blend.polygon_mask(region.shape, [points[list(t)] for t in mesh.TEMPLES]) & ~brow_zone
    upper = (forehead > 0) | (temples > 0)
    band = ~upper & (blend.erode(oval, max(1, round(EDGE_BAND * size))) == 0)
    bad = ((distance > HAIR_DISTANCE) & upper) | ((shaded > HAIR_DISTANCE) & band)
    bad = np.where(bad, 255, 0).astype(np.uint8)
    return blend.reachable_from_outside(bad, region)


def skin_samples(shape: tuple[int, ...], points: NDArray[np.float32], size: float,
                 min_radius: int = 1) -> NDArray[np.uint8]:
    """0/255 mask of small discs on the cheeks and the nose's ridge (``mesh.SKIN_SAMPLES``): the skin
    whose colour stands for the face's."""
    samples = np.zeros(shape[:2], np.uint8)
    for i in mesh.SKIN_SAMPLES:
        centre = (round(float(points[i, 0])), round(float(points[i, 1])))
        cv2.circle(samples, centre, max(min_radius, round(0.04 * size)), 255, -1)
    return samples


def bare_skin(region: NDArray[np.uint8], points: NDArray[np.float32], size: float) -> NDArray[np.uint8]:
    """0/255 mask of bare skin (no eyes, brows or lips, away from the edge) for colour statistics."""
    features = blend.polygon_mask(
        region.shape,
        [points[list(ix)] for ix in (mesh.RIGHT_EYE, mesh.LEFT_EYE, mesh.LIPS_OUTER,
                                     mesh.RIGHT_EYEBROW, mesh.LEFT_EYEBROW)],
        grow=max(1, round(0.015 * size)),
    )
    skin = blend.erode(region, round(0.04 * size))
    skin[features > 0] = 0
    return skin
