"""How much of an image the content guard sees, measured with benign proxies, and what it costs.

The guard must see anything big enough to be swapped. Its own face classes (FACE_MALE, FACE_FEMALE)
stand in for the classes it refuses: a person whose face the guard's detector cannot find at a given
scale is a person whose body it cannot judge either. No sexual material is used.

Canvases of 1280x720, 1920x1080 and 4000x3000 (a textured wall) each get one of the photos in
examples/ pasted as a "person" 1/2 .. 1/16 of the canvas high, at four places. A case counts only when
the face detector (the embedded mesh analyser, as a run uses it) finds the face, so it would be
swapped. The guard sees the face when one of its FACE_* detections (NudeNet's 0.2 reporting floor)
has its centre inside the face box.

- before: the guard as it was, one 320-px look at the whole image;
- after: ``ContentGuard.detect(image, faces)``, as a run calls it (whole image, tiles when large, a
  view around every face to be swapped).

Run:  .venv/bin/python benchmarks/bench_guard.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import cv2
import numpy as np

from masquerade._stages import guard as G
from masquerade._stages.detect import MeshAnalyser

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CANVASES = ((720, 1280), (1080, 1920), (3000, 4000))
FRACTIONS = (2, 4, 8, 16)
FACE_LABELS = ("FACE_MALE", "FACE_FEMALE")


def wall(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grey = 150 + 30 * np.sin(xx / 210.0) + 20 * np.cos(yy / 170.0)
    grey = grey + cv2.GaussianBlur(rng.normal(0, 12, (h, w)).astype(np.float32), (0, 0), 3)
    return np.dstack([grey * 0.95, grey, grey * 1.05]).clip(0, 255).astype(np.uint8)


def place(canvas: np.ndarray, photo: np.ndarray, height: int, where: tuple[float, float]) -> np.ndarray:
    """``photo`` resized to ``height`` px high, pasted with its centre at ``where`` (fractions)."""
    h, w = canvas.shape[:2]
    ph, pw = height, max(1, round(photo.shape[1] * height / photo.shape[0]))
    pw, ph = min(pw, w), min(ph, h)
    small = cv2.resize(photo, (pw, ph), interpolation=cv2.INTER_AREA)
    x0 = int(np.clip(where[0] * w - pw / 2, 0, w - pw))
    y0 = int(np.clip(where[1] * h - ph / 2, 0, h - ph))
    out = canvas.copy()
    out[y0 : y0 + ph, x0 : x0 + pw] = small
    return out


def whole_only(guard: G.ContentGuard, image: np.ndarray) -> list[G.Detection]:
    """The guard before tiles and face views: one look at the whole image."""
    blob, scale = G.preprocess(image)
    output = guard._session.run(None, {guard._input: blob})[0]
    return G.postprocess(output, scale, image.shape[1], image.shape[0])


def sees(detections: list[G.Detection], box: np.ndarray) -> bool:
    x1, y1, x2, y2 = (float(v) for v in box)
    for d in detections:
        if d.label in FACE_LABELS:
            cx, cy = d.box[0] + d.box[2] / 2, d.box[1] + d.box[3] / 2
            if x1 <= cx <= x2 and y1 <= cy <= y2:
                return True
    return False


def timed(fn, repeat: int) -> float:
    """Best-of-``repeat`` seconds (robust to the other jobs on a shared machine)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two photos, two places")
    args = parser.parse_args()
    guard, analyser = G.ContentGuard(), MeshAnalyser()
    photos = [(p.stem, cv2.imread(str(p))) for p in sorted(EXAMPLES.glob("*.[jp][pn]g"))]
    places = ((0.2, 0.3), (0.7, 0.6), (0.5, 0.5), (0.85, 0.2))
    if args.quick:
        photos, places = photos[:2], places[:2]
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    print(f"{'canvas':>10} {'person':>7} {'swappable':>9} {'before':>7} {'after':>7} {'views':>5} "
          f"{'ms before':>9} {'ms after':>9}")
    for h, w in CANVASES:
        background = wall(h, w, 1)
        for fraction in FRACTIONS:
            cases = before = after = 0
            views, t_before, t_after = [], [], []
            for _, photo in photos:
                for where in places:
                    image = place(background, photo, h // fraction, where)
                    faces = analyser.detect(image)
                    if not faces:
                        continue
                    face = max(faces, key=lambda f: f.size)
                    cases += 1
                    before += sees(whole_only(guard, image), face.bbox)
                    after += sees(guard.detect(image, [face]), face.bbox)
                    views.append(len(G.plan_views(h, w, [face])))
                    if len(t_before) < 2:  # the first two cases of the row
                        t_before.append(timed(lambda im=image: whole_only(guard, im), 3))
                        t_after.append(timed(lambda im=image, f=face: guard.detect(im, [f]), 3))
            if cases:
                print(f"{w}x{h:<5} {'1/' + str(fraction):>7} {cases:>9} {before / cases:>7.0%} "
                      f"{after / cases:>7.0%} {statistics.median(views):>5.0f} "
                      f"{1000 * statistics.median(t_before):>9.0f} {1000 * statistics.median(t_after):>9.0f}")
            else:
                print(f"{w}x{h:<5} {'1/' + str(fraction):>7} {0:>9} (the face detector finds no face)")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
