"""Make the bundled int8 calibration faces (src/masquerade/assets/calibration) from the example photos.

    python tools/make_calibration_faces.py

Each public-domain photo in examples/ gives one face-centred 384 px crop (the ArcFace template mapped
to the middle 192 px, so the wider FFHQ framing of enhancers still fits) and its five key points,
found by the embedded detector. ``faces.json`` lists the files and key points.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from masquerade._stages.detect import MeshAnalyser
from masquerade.geometry.align import estimate_similarity, transform_points
from masquerade.media.image import read_image
from masquerade.models.manifest import ARCFACE_112

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg", "astronaut.png")
OUT = ROOT / "src" / "masquerade" / "assets" / "calibration"
SIZE = 384


def main() -> None:
    analyser = MeshAnalyser()
    # The 112 px template, scaled by 192/112 and centred in the 384 px crop.
    template = (np.asarray(ARCFACE_112) - 56.0) * (192.0 / 112.0) + SIZE / 2.0
    entries = []
    for name in PHOTOS:
        image = read_image(ROOT / "examples" / name).image
        face = max(analyser.detect(image), key=lambda f: float(f.bbox[2] - f.bbox[0]))
        affine = estimate_similarity(face.kps5, template)
        crop = cv2.warpAffine(image, affine, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
        file_name = Path(name).stem + ".jpg"
        cv2.imwrite(str(OUT / file_name), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
        kps = transform_points(face.kps5, affine)
        entries.append({"file": file_name, "kps5": [[round(float(v), 2) for v in point] for point in kps]})
    lines = ",\n  ".join(json.dumps(entry) for entry in entries)
    (OUT / "faces.json").write_text(f'{{"size": {SIZE}, "faces": [\n  {lines}\n]}}\n')


if __name__ == "__main__":
    main()
