"""Cluster figures on this machine: one machine vs a local Ray cluster of 1 and 2 workers, and the
per-segment costs (start, warm-up, cutting, joining) that the README's scaling model is built from.

    python benchmarks/bench_cluster.py                               # 12 s, 640x360, key frame every 2 s
    python benchmarks/bench_cluster.py --seconds 24 --size 1280x720 --out results.txt

Every figure is printed with the load average it was measured under (the machine may be shared).
The clip is the bundled photo under a moving virtual camera (examples/make_sample_clip.py), one face,
``--faces reference`` without a reference image (the person is decided once, as on one machine).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "examples"))

import numpy as np  # noqa: E402
from make_sample_clip import make_benchmark_clip  # noqa: E402

from masquerade.api import Job, RunHooks, SourcePhotos, swap  # noqa: E402
from masquerade.cluster import ClusterOptions  # noqa: E402
from masquerade.cluster import swap as cluster_swap  # noqa: E402
from masquerade.config import RunConfig  # noqa: E402
from masquerade.media.reader import VideoReader  # noqa: E402
from masquerade.media.segments import cut_segment, join_segments  # noqa: E402
from masquerade.pipeline import Pipeline  # noqa: E402
from masquerade.split import decide_person, joined_edit, plan_video, swap_segment  # noqa: E402
from masquerade.types import FrameContext  # noqa: E402

SOURCE = HERE.parent / "examples" / "astronaut.png"


@dataclass
class Row:
    name: str
    seconds: float
    frames: int
    load: str
    note: str = ""

    def line(self, baseline: float | None) -> str:
        speed = f"{baseline / self.seconds:5.2f}x" if baseline else "   -  "
        return (f"{self.name:<44} {self.seconds:8.1f} s {self.frames / self.seconds:7.2f} fps {speed}  "
                f"load {self.load}  {self.note}")


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


class Centres(RunHooks):
    """The tracked (smoothed) centre of the swapped face in each frame: what the swap is drawn at."""

    def __init__(self) -> None:
        self.at: dict[int, np.ndarray] = {}

    def on_frame(self, frame: FrameContext) -> None:
        if frame.selected:
            self.at[frame.index] = frame.selected[0].kps5.mean(axis=0)


def split_locally(pipeline: Pipeline, clip: Path, config: RunConfig, seconds: float, warmup: float,
                  folder: Path, centres: Centres) -> tuple[float, float, int, float]:
    """Every segment in turn on this process (no Ray): total, warm-up part, segments, join seconds
    (joining and labelling the whole video)."""
    plan = plan_video(clip, config, seconds, warmup)
    job = Job.from_photos(config, SourcePhotos.read(config, [SOURCE]), centres, pipeline)
    with VideoReader(clip) as reader:
        person = decide_person(job, reader.frames(), 25.0)
    assert person is not None
    started, warm, files, results = time.perf_counter(), 0.0, [], []
    for segment in plan.segments:
        out = folder / f"part{segment.number}.mp4"
        chunk = cut_segment(clip, segment, folder)
        results.append(swap_segment(job, person, chunk, plan, segment, out))
        warm += results[-1].warmup_seconds
        files.append(out)
    total = time.perf_counter() - started
    joined = time.perf_counter()
    join_segments(clip, files, folder / "joined.mp4", config.encode, joined_edit(results))
    return total, warm, len(plan.segments), time.perf_counter() - joined


def compare(pipeline: Pipeline, single: Path, cluster: Path, joins: list[int], picture: Path | None) -> str:
    """PSNR of the cluster's output against one machine's, and the detected face at each join; with
    ``picture``, a sheet of the faces on both sides of each join and their difference (x10)."""
    import av
    import cv2

    def frames(path: Path) -> list[np.ndarray]:
        with av.open(str(path)) as container:
            return [f.to_ndarray(format="bgr24") for f in container.decode(container.streams.video[0])]

    a, b = frames(single), frames(cluster)
    mse = [float(np.mean((x.astype(float) - y.astype(float)) ** 2)) for x, y in zip(a, b, strict=True)]
    psnr = [10 * np.log10(255**2 / m) if m else float("inf") for m in mse]
    whole = 10 * np.log10(255**2 / np.mean(mse))
    rows = []
    gaps = {}
    for index in range(0, len(a)):
        fa, fb = pipeline.detect_faces(a[index]), pipeline.detect_faces(b[index])
        if fa and fb:
            gaps[index] = float(np.linalg.norm(fa[0].kps5.mean(0) - fb[0].kps5.mean(0)))
    at_joins = [gaps[i] for j in joins for i in (j - 1, j) if i in gaps]
    for join in joins:
        faces = pipeline.detect_faces(a[join])
        if picture is not None and faces:
            x0, y0, x1, y1 = (int(v) for v in faces[0].bbox)
            box = (slice(max(0, y0 - 30), y1 + 30), slice(max(0, x0 - 30), x1 + 30))
            diff = np.clip(np.abs(a[join].astype(int) - b[join].astype(int)) * 10, 0, 255).astype(np.uint8)
            crops = [a[join - 1][box], b[join - 1][box], a[join][box], b[join][box], diff[box]]
            rows.append(np.hstack([cv2.resize(c, (c.shape[1] * 200 // c.shape[0], 200)) for c in crops]))
    if picture is not None and rows:
        width = max(r.shape[1] for r in rows)
        padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0))) for r in rows]
        cv2.imwrite(str(picture), np.vstack(padded))
    everywhere = list(gaps.values())
    median, p95 = np.median(everywhere), np.percentile(everywhere, 95)
    return (f"2 workers' output against one machine's (default encoder settings): clip PSNR {whole:.2f} dB, "
            f"lowest frame {min(psnr):.2f} dB.\nDetected face centre, cluster vs one machine (detector noise "
            f"on two encodes): at the {len(joins)} joins max {max(at_joins, default=0):.2f} px; over all "
            f"frames median {median:.2f}, 95th percentile {p95:.2f}, "
            f"max {max(everywhere):.2f} px")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--size", default="640x360")
    parser.add_argument("--gop", type=float, default=2.0, help="seconds between key frames")
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, help="also write the report here")
    parser.add_argument("--picture", type=Path,
                        help="write the faces on both sides of each join, one machine vs 2 workers, and "
                             "their difference x10 (left to right)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    import ray

    config = RunConfig()
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
        folder = Path(tmp)
        clip = make_benchmark_clip(folder / "clip.mp4", args.seconds, (width, height),
                                   gop=round(25 * args.gop))
        frames = round(args.seconds * 25)
        say(f"clip: {args.seconds:g} s, {width}x{height}, 25 fps, key frame every {args.gop:g} s; "
            f"segments >= {args.segment_seconds:g} s, warm-up 1 s; {os.cpu_count()} cores, no GPU")
        say()

        start = time.perf_counter()
        pipeline = Pipeline(config)
        build = time.perf_counter() - start
        tracked = Centres()
        summary = swap([SOURCE], clip, folder / "single.mp4", config, tracked, pipeline=pipeline)
        single = Row("one machine (masquerade swap)", summary.seconds, frames, load(),
                     f"+ {build:.1f} s models")

        local = folder / "split"
        local.mkdir()
        cold_centres, warm_centres = Centres(), Centres()
        bare, _, count, _ = split_locally(pipeline, clip, config, args.segment_seconds, 0.0, local,
                                          cold_centres)
        split_row = Row(f"segments in turn, no warm-up ({count} segments)", bare, frames, load())
        warm_total, warm, _, join_seconds = split_locally(pipeline, clip, config, args.segment_seconds, 1.0,
                                                          local, warm_centres)
        warm_row = Row("segments in turn, 1 s warm-up", warm_total, frames, load(), f"warm-up {warm:.1f} s")

        start = time.perf_counter()
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
        ray_start = time.perf_counter() - start
        rows = [single, split_row, warm_row]
        cluster_timings = {}
        for workers, cpus in ((1, 2), (2, 1)):
            options = ClusterOptions(workers=workers, cpus_per_worker=cpus,
                                     segment_seconds=args.segment_seconds, store=folder / "store")
            start = time.perf_counter()
            result = cluster_swap([SOURCE], clip, folder / f"cluster{workers}.mp4", config, options)
            wall = time.perf_counter() - start
            steady = wall - result.timings["start"] - result.timings.get("plan", 0.0)
            name = f"Ray, {workers} worker{'s' if workers > 1 else ''} x {cpus} CPU{'s' if cpus > 1 else ''}"
            rows.append(Row(name, steady, frames, load(),
                            f"+ {result.timings['start']:.1f} s workers' start, wall {wall:.1f} s"))
            cluster_timings[workers] = (result, wall)
        ray.shutdown()

        say(f"{'run':<44} {'seconds':>10} {'fps':>11} {'speed':>6}")
        for row in rows:
            say(row.line(single.seconds))
        say()

        n = count
        result, wall = cluster_timings[1]
        t = result.timings
        steady = wall - t["start"] - t.get("plan", 0.0)
        clip_mb = clip.stat().st_size / 1e6
        costs = [
            ("local Ray cluster start (ray.init), once", ray_start),
            ("workers' start (1 worker, models), once", t["start"]),
            (f"plan: hash + read packets of {clip_mb:.1f} MB, per file", t.get("plan", 0.0)),
            ("segment start (split without warm-up - one run)", (bare - single.seconds) / n),
            ("warm-up of 1 s (split run, per segment with one)", warm / max(n - 1, 1)),
            ("cut + hand over (driver)", t["cut"] / n),
            ("keep in the store (driver)", t["store"] / n),
            ("Ray round trip (1 worker: wall - tasks - join)", (steady - t["segments"] - t["join"]) / n),
            ("join + label (driver)", t["join"] / n),
        ]
        say(f"per segment unless said (1 worker's run; joining the whole split run took "
            f"{join_seconds:.2f} s), load {load()}:")
        for name, seconds in costs:
            say(f"  {name:<52} {seconds:7.3f} s")
        say()
        joins = [s.first for s in plan_video(clip, config, args.segment_seconds, 1.0).segments[1:]]
        for name, centres in (("no warm-up", cold_centres), ("1 s warm-up", warm_centres)):
            gaps = [float(np.linalg.norm(centres.at[i] - tracked.at[i])) for j in joins for i in (j - 1, j)]
            say(f"tracked face centre at the joins vs one machine, {name}: max {max(gaps):.3f} px, "
                f"mean {np.mean(gaps):.3f} px")
        say(compare(pipeline, folder / "single.mp4", folder / "cluster2.mp4", joins, args.picture))
        if args.out:
            args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
