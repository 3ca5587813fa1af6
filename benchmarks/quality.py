"""Quality matrix of the embedded mesh swap: identity, colour artifacts, faces covered in a clip.

    python benchmarks/quality.py                     # portraits + group photos, contact sheet
    python benchmarks/quality.py --clip              # + the 720p group clip (outside detector check)
    python benchmarks/quality.py --json out/q.json --compare out/q_before.json
    python benchmarks/quality.py --readme docs/mesh_swap.jpg   # the README's before / after picture

Pairs: every bundled photo onto every other one (both directions), and every photo onto each face of
two synthetic group photos (``masquerade.bench.groups``: 11 faces at many sizes, rotations and
mirrored; 8 heads turned 60 degrees). Per face: dlib distance to the source before and after (aligned
by dlib's own predictor, see ``masquerade.bench.quality``), the colour-artifact score (percent of face
pixels too grey or too blue, over the target's own), and the swap time. Writes a contact sheet of
before / after crops (``--sheet``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from masquerade._stages.detect import MeshAnalyser
from masquerade._stages.recognize import DEFAULT_THRESHOLD, DlibRecognizer
from masquerade._stages.swap_mesh import MeshSwapper
from masquerade.bench import quality
from masquerade.bench.groups import GROUP_LAYOUT, compose_group, turned_group

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PHOTOS = ("obama", "obama2", "biden", "astronaut")
PERSON = {"obama": "obama", "obama2": "obama", "biden": "biden", "astronaut": "astronaut"}
TILE = 160


def _load() -> dict[str, np.ndarray]:
    names = {"obama": "obama.jpg", "obama2": "obama2.jpg", "biden": "biden.jpg", "astronaut": "astronaut.png"}
    return {k: cv2.imread(str(EXAMPLES / v), cv2.IMREAD_COLOR) for k, v in names.items()}


def _who(faces, places: list[tuple[str, float, float]]) -> list[str]:
    """Name of the sample nearest to each detected face's centre."""
    out = []
    for face in faces:
        cx, cy = (float(v) for v in face.center)
        out.append(min(places, key=lambda p: (p[1] - cx) ** 2 + (p[2] - cy) ** 2)[0])
    return out


def _targets(photos, analyser):
    """(scene name, image, faces, person per face) for the portraits and the two group photos."""
    scenes = []
    for name in PHOTOS:
        scenes.append((name, photos[name], analyser.detect(photos[name]), [PERSON[name]]))
    group = compose_group(photos)
    faces = analyser.detect(group)
    places = [(p.source, p.cx, p.cy) for p in GROUP_LAYOUT]
    scenes.append(("group", group, faces, [PERSON[n] for n in _who(faces, places)]))
    turned, placed = turned_group(photos, analyser)
    names = [n for n in photos for _ in (1, -1)]
    faces = analyser.detect(turned)
    places = [(n, cx, cy) for n, (cx, cy, _) in zip(names, placed, strict=True)]
    scenes.append(("turned", turned, faces, [PERSON[n] for n in _who(faces, places)]))
    return scenes


def run(args: argparse.Namespace) -> dict:
    photos = _load()
    analyser = MeshAnalyser()
    swapper = MeshSwapper()
    recognizer = DlibRecognizer()
    sources = {}
    for name in PHOTOS:
        (face,) = analyser.detect(photos[name])
        sources[name] = (face, swapper.prepare([(photos[name], face)]),
                         quality.embed_box(recognizer, photos[name], face))
    rows = []
    tiles = []
    for scene, image, faces, people in _targets(photos, analyser):
        for src in PHOTOS:
            if scene == src:
                continue
            src_face, prepared, src_emb = sources[src]
            started = time.process_time()  # CPU time: steadier than wall time on a shared machine
            out = swapper.swap_many(image, faces, prepared)
            ms = 1000 * (time.process_time() - started) / max(len(faces), 1)
            refits = analyser.refine(out, faces)
            same = len(refits) == len(faces)
            by_index = {id(f): r for f, r in zip(faces, refits, strict=True)} if same else {}
            for i, (face, person) in enumerate(zip(faces, people, strict=True)):
                before = quality.identity_distance(recognizer, image, face, src_emb)
                after = quality.identity_distance(recognizer, out, face, src_emb)
                refit = by_index.get(id(face))
                score = quality.artifact_share(out, image, face.landmarks, photos[src], src_face.landmarks,
                                               None if refit is None else refit.landmarks)
                rows.append({"scene": scene, "source": src, "face": i, "size": round(face.size),
                             "same": person == PERSON[src], "before": round(before, 3),
                             "after": round(after, 3), "artifact": round(score, 2), "ms": round(ms, 1)})
                if args.sheet:
                    label = f"{src}>{scene}#{i} {before:.2f}>{after:.2f} a{score:.1f}%"
                    pair = np.hstack([quality.face_crop(x, face, TILE) for x in (image, out)])
                    tiles.append(quality.labelled(pair, label))
    result = {"rows": rows}
    if args.sheet:
        sheet = quality.contact_sheet(tiles, columns=args.columns)
        Path(args.sheet).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.sheet), sheet)
        result["sheet"] = str(args.sheet)
    if args.clip:
        result["clip"] = run_clip(photos, args)
    return result


README_PAIRS = (("obama", "biden"), ("biden", "obama2"), ("astronaut", "obama"))
"""Source, target: the rows of the README picture (``--readme``)."""


def readme_picture(photos, side: int = 300) -> np.ndarray:
    """Rows of source, target and swapped crops with a caption bar: the README's before / after."""
    analyser, swapper = MeshAnalyser(), MeshSwapper()
    rows = []
    for src, dst in README_PAIRS:
        (src_face,) = analyser.detect(photos[src])
        (dst_face,) = analyser.detect(photos[dst])
        out = swapper.swap(photos[dst], dst_face, swapper.prepare([(photos[src], src_face)]))
        rows.append(np.hstack([_portrait(photos[src], src_face, side), _portrait(photos[dst], dst_face, side),
                               _portrait(out, dst_face, side)]))
    bar = np.full((26, 3 * side, 3), 32, np.uint8)
    for i, text in enumerate(("source", "target", "swapped (mesh)")):
        cv2.putText(bar, text, (i * side + 8, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (235,) * 3, 1, cv2.LINE_AA)
    return np.vstack([bar, *rows])


def _portrait(image: np.ndarray, face, side: int) -> np.ndarray:
    """A square head-and-shoulders crop around ``face``, moved to lie inside the image, at ``side`` px."""
    h, w = image.shape[:2]
    span = min(round(2.0 * max(face.width, face.height)), h, w)
    cx, cy = float(face.center[0]), float(face.center[1]) + 0.15 * face.height
    x0 = int(np.clip(round(cx - span / 2), 0, w - span))
    y0 = int(np.clip(round(cy - span / 2), 0, h - span))
    return cv2.resize(image[y0 : y0 + span, x0 : x0 + span], (side, side), interpolation=cv2.INTER_AREA)


def run_clip(photos, args: argparse.Namespace) -> dict:
    from masquerade.bench.groups import group_clip
    from masquerade.config import RunConfig, SelectOptions
    from masquerade.pipeline import Pipeline
    from masquerade.types import FrameContext

    frames = group_clip(photos, MeshAnalyser(), frames=args.clip_frames)
    pipeline = Pipeline(RunConfig(select=SelectOptions(mode="all")))
    source = pipeline.prepare_source([("obama", photos["obama"])])
    started = time.perf_counter()
    outputs = [ctx.image for ctx in pipeline.swap_frames(
        (FrameContext(index=i, image=f) for i, f in enumerate(frames)), source, 25.0)]
    seconds = time.perf_counter() - started
    from masquerade._stages.watermark import WatermarkEmbedder

    mark = WatermarkEmbedder()
    coverage = quality.clip_coverage(frames, outputs, [mark(f) for f in frames])
    if args.clip_sheet:
        picks = np.linspace(0, len(frames) - 1, 6).astype(int)
        tiles = [np.hstack([cv2.resize(x[i], (640, 360)) for x in (frames, outputs)]) for i in picks]
        cv2.imwrite(str(args.clip_sheet), quality.contact_sheet(tiles, columns=1))
    return {"frames": len(frames), "fps": round(len(frames) / seconds, 1),
            "detections": coverage.detections, "swapped": coverage.swapped, "share": round(coverage.share, 3),
            "longest_gap": coverage.longest_gap, "start_jump": round(coverage.start_jump, 2),
            "flicker_ratio": round(float(coverage.flicker_ratio), 3),
            "band_flicker_ratio": round(float(coverage.band_flicker_ratio), 3)}


def _summary(rows: list[dict], label: str) -> str:
    if not rows:
        return f"{label}: no faces"
    other = [r for r in rows if not r["same"]]
    before = np.mean([r["before"] for r in other]) if other else float("nan")
    after = np.mean([r["after"] for r in other]) if other else float("nan")
    moved = sum(r["after"] < r["before"] for r in other)
    moved15 = sum(r["before"] - r["after"] >= 0.15 for r in other)
    below = sum(r["after"] < DEFAULT_THRESHOLD for r in other)
    worst = max(r["artifact"] for r in rows)
    over = sum(r["artifact"] > 0.8 for r in rows)
    return (f"{label}: {len(other)} other-person faces: mean distance {before:.3f} -> {after:.3f} "
            f"(moved {moved}/{len(other)}, by >= 0.15: {moved15}, below {DEFAULT_THRESHOLD}: {below}); "
            f"artifact max {worst:.2f} %, faces > 0.8 %: {over}/{len(rows)}; "
            f"{np.mean([r['ms'] for r in rows]):.1f} ms/face")


def format_report(result: dict, compare: dict | None = None) -> str:
    rows = result["rows"]
    old = {(r["scene"], r["source"], r["face"]): r for r in (compare or {}).get("rows", [])}
    lines = [f"{'source':>9} {'target':>9} {'#':>2} {'px':>4} {'same':>4} {'before':>6} {'after':>6} "
             f"{'was':>6} {'artif%':>6} {'was%':>6} {'ms':>5}"]
    for r in rows:
        o = old.get((r["scene"], r["source"], r["face"]), {})
        same = "y" if r["same"] else ""
        lines.append(f"{r['source']:>9} {r['scene']:>9} {r['face']:>2} {r['size']:>4} {same:>4} "
                     f"{r['before']:6.3f} {r['after']:6.3f} {o.get('after', float('nan')):6.3f} "
                     f"{r['artifact']:6.2f} {o.get('artifact', float('nan')):6.2f} {r['ms']:5.1f}")
    lines.append("")
    portraits = [r for r in rows if r["scene"] in PHOTOS]
    groups = [r for r in rows if r["scene"] not in PHOTOS]
    for label, subset in (("portraits", portraits), ("groups", groups), ("all", rows)):
        lines.append(_summary(subset, label))
        if compare:
            keys = {(r["scene"], r["source"], r["face"]) for r in subset}
            lines.append("  before: " + _summary([o for k, o in old.items() if k in keys], label))
    if "clip" in result:
        c = result["clip"]
        lines.append(f"clip: {c['frames']} frames at {c['fps']} fps (sequential, in memory); outside "
                     f"detector (dlib HOG) faces {c['detections']}, swapped {c['swapped']} "
                     f"({100 * c['share']:.1f} %), "
                     f"longest unswapped run {c['longest_gap']} frames, start colour jump {c['start_jump']}, "
                     f"flicker output/input {c['flicker_ratio']} inside the faces, "
                     f"{c.get('band_flicker_ratio', '-')} in the band around them")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quality.py", description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", type=Path, default=Path("out/quality_sheet.png"))
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument("--compare", type=Path, help="rows of an earlier run to show beside these")
    parser.add_argument("--clip", action="store_true", help="also run the 720p group clip")
    parser.add_argument("--clip-frames", type=int, default=150)
    parser.add_argument("--clip-sheet", type=Path, default=Path("out/quality_clip.png"))
    parser.add_argument("--readme", type=Path, help="only write the README picture here (docs/mesh_swap.jpg)")
    args = parser.parse_args(argv)
    if args.readme:
        args.readme.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(args.readme), readme_picture(_load()), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return 0
    result = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    compare = json.loads(args.compare.read_text()) if args.compare else None
    print(format_report(result, compare))
    return 0


if __name__ == "__main__":
    sys.exit(main())
