"""People, not faces: identity clustering and per-person mapping on footage with known people.

Builds the clips of ``masquerade.bench.people_clips`` (cuts between people, two side by side, one
leaving and coming back, two crossing) from the bundled public-domain photos, then for each clip:

1. ``find_people``: people found vs the truth, splits (a true person spread over two found ones),
   merges (two true people in one found), and purity (of the detected faces given to a found person,
   the share that are its majority true person), counted per frame;
2. ``swap`` with ``--map``: each found person's crop (``faces -o``'s p1.jpg, ...) as the REFERENCE and a
   different bundled photo as the SOURCE; per frame, whether each detected true person got its own
   source (goal >= 98 %), and on every 5th frame whether the swapped face moved towards that source.

    .venv/bin/python benchmarks/people.py [--size 640x360] [--seconds 1.0] [--clips cuts crossing] [--out DIR]

Prints one table; ``--out`` keeps the clips, contact sheets and a few mapped frames as PNG.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from masquerade._stages.tracklets import summarise
from masquerade.bench.clips import parse_size
from masquerade.bench.people_clips import CLIPS, PeopleClip, TrueFace, load_photos, write_people_clip
from masquerade.config import RunConfig
from masquerade.media.reader import VideoReader
from masquerade.pipeline import Pipeline
from masquerade.types import Face

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOURCES = {"obama": "astronaut.png", "biden": "obama.jpg", "astronaut": "biden.jpg"}
"""The source each true person is mapped to (always someone else)."""
MIN_VISIBLE = 0.5
"""A true face counts when at least half of its box is in the picture and not covered."""


def match(truth: TrueFace, faces: list[Face]) -> Face | None:
    """The detected face whose centre lies in the true face's box (the nearest if several)."""
    x1, y1, x2, y2 = truth.box
    inside = [f for f in faces if x1 <= f.center[0] <= x2 and y1 <= f.center[1] <= y2]
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    return min(inside, key=lambda f: float(np.linalg.norm(f.center - centre)), default=None)


def clustering(pipeline: Pipeline, clip: PeopleClip) -> dict:
    faces_per_frame: dict[int, list[Face]] = {}
    started = time.perf_counter()
    with VideoReader(clip.path) as reader:
        groups, frames = pipeline.people_tracklets(
            reader.frames(), clip.fps, on_frame=lambda ctx: faces_per_frame.__setitem__(ctx.index, ctx.faces))
    seconds = time.perf_counter() - started
    owner = {}
    for g, group in enumerate(groups):
        for tracklet in group:
            for first, last in tracklet.spans:
                for f in range(first, last + 1):
                    owner[(tracklet.track_id, f)] = g
    counts: dict[int, Counter] = {g: Counter() for g in range(len(groups))}
    for index, truth in enumerate(clip.truth):
        for true in truth:
            face = match(true, faces_per_frame.get(index, []))
            if face is not None and true.visible >= MIN_VISIBLE:
                counts[owner[(face.track_id, index)]][true.person] += 1
    labelled = sum(sum(c.values()) for c in counts.values())
    purity = sum(max(c.values(), default=0) for c in counts.values()) / max(labelled, 1)
    found_of = {p: {g for g, c in counts.items() if c[p]} for p in clip.people}
    return {
        "groups": groups, "frames": frames, "seconds": seconds, "purity": purity,
        "found": len(groups), "truth": len(clip.people),
        "split": sum(len(gs) > 1 for gs in found_of.values()),
        "merged": sum(sum(1 for n in c.values() if n) > 1 for c in counts.values()),
        "majority": {g: c.most_common(1)[0][0] if c else None for g, c in counts.items()},
    }


def mapping(pipeline: Pipeline, clip: PeopleClip, references: list[tuple[str, str]],
            out: Path | None) -> dict:
    """``references``: (true person, reference crop path) per mapped person."""
    recognizer = pipeline._stages.recognizer
    assert recognizer is not None
    plan = [((path, cv2.imread(path)), [(SOURCES[person], cv2.imread(str(EXAMPLES / SOURCES[person])))])
            for person, path in references]
    sources = pipeline.prepare_map([], plan)
    source_embeddings = [recognizer.embed(img, max(pipeline.faces_from_left(img), key=lambda f: f.size))
                         for (_, [(_, img)]) in plan]
    person_index = {person: k for k, (person, _) in enumerate(references)}
    right = total = moved = checked = 0
    shown: list[np.ndarray] = []
    started = time.perf_counter()
    with VideoReader(clip.path) as reader, VideoReader(clip.path) as original:
        originals = original.frames()
        for ctx in pipeline.swap_frames(reader.frames(), sources, float(clip.fps)):
            before = next(originals).image
            for true in clip.truth[ctx.index]:
                face = match(true, ctx.faces)
                if face is None or true.visible < MIN_VISIBLE or true.person not in person_index:
                    continue
                want = person_index[true.person]
                total += 1
                right += face.person == want
                if ctx.index % 5 == 0 and face.person == want:
                    checked += 1
                    d_after = recognizer.distance(recognizer.embed(ctx.image, face), source_embeddings[want])
                    d_before = recognizer.distance(recognizer.embed(before, face), source_embeddings[want])
                    moved += d_after < d_before
            if out is not None and ctx.index % max(len(clip.truth) // 4, 1) == len(clip.truth) // 8:
                shown.append(_annotated(before, ctx.image, ctx.faces, [p for p, _ in references]))
    if out is not None and shown:
        cv2.imwrite(str(out / f"{clip.name}_mapped.png"), np.vstack(shown))
    return {"right": right, "total": total, "moved": moved, "checked": checked,
            "seconds": time.perf_counter() - started}


def _annotated(before: np.ndarray, after: np.ndarray, faces: list[Face], people: list[str]) -> np.ndarray:
    after = after.copy()
    for face in faces:
        x1, y1, x2, y2 = face.bbox.astype(int)
        label = f"{people[face.person]} -> {SOURCES[people[face.person]]}" if face.person is not None else "-"
        cv2.rectangle(after, (x1, y1), (x2, y2), (0, 220, 0), 2)
        cv2.putText(after, label, (x1, max(y1 - 6, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1,
                    cv2.LINE_AA)
    return np.hstack([before, after])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="640x360", help="frame size (default 640x360)")
    parser.add_argument("--seconds", type=float, default=1.0, help="scale of every shot's length (default 1)")
    parser.add_argument("--clips", nargs="+", default=list(CLIPS), choices=CLIPS)
    parser.add_argument("--out", type=Path, help="keep clips, contact sheets and mapped frames here")
    args = parser.parse_args()
    size = parse_size(args.size)
    photos = load_photos(EXAMPLES)
    pipeline = Pipeline(RunConfig())
    load = os.getloadavg()
    rows = []
    with tempfile.TemporaryDirectory() as temp:
        folder = args.out or Path(temp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.clips:
            clip = write_people_clip(name, folder, photos, size, seconds=args.seconds)
            c = clustering(pipeline, clip)
            people = summarise(c["groups"], target=clip.path, kind="video", frames=c["frames"],
                               fps=float(clip.fps), threshold=pipeline.threshold, recognizer="dlib")
            written = people.write(folder / f"{name}_people")
            # Each found person's crop is the reference; the source is the one of its true person.
            references = [(_truth_of(p, c), str(written[p.id])) for p in people.persons]
            references = [(person, path) for person, path in references if person is not None]
            m = mapping(pipeline, clip, references, args.out)
            rows.append((name, c, m))
            print(f"{name}: done", flush=True)
    print(f"\nidentity clustering and --map on {args.size} clips at 25 fps (load average {load[0]:.1f} "
          f"{load[1]:.1f} {load[2]:.1f} at the start)")
    header = ("clip", "frames", "truth", "found", "split", "merged", "purity", "find s",
              "map right", "map %", "moved to source", "map s")
    print(" | ".join(header))
    print(" | ".join("---" for _ in header))
    for name, c, m in rows:
        share = 100 * m["right"] / max(m["total"], 1)
        print(" | ".join(str(v) for v in (
            name, c["frames"], c["truth"], c["found"], c["split"], c["merged"], f"{100 * c['purity']:.1f} %",
            f"{c['seconds']:.1f}", f"{m['right']}/{m['total']}", f"{share:.1f} %",
            f"{m['moved']}/{m['checked']}", f"{m['seconds']:.1f}")))


def _truth_of(person, c: dict) -> str | None:
    """The true person of a found person: the majority true person of the group with its embedding."""
    for g, group in enumerate(c["groups"]):
        if any(t.best_frame == person.best_frame and t.best_box == person.best_box for t in group):
            return c["majority"][g]
    return None


if __name__ == "__main__":
    main()
