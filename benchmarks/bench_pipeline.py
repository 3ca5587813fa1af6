"""End-to-end benchmark of the embedded default on 720p single-face clips (issue: >= 15 fps, flat RSS).

Each clip runs in a fresh subprocess so its peak RSS is its own. Prints one table:
clip length, frames, end-to-end fps (decode + analyse + swap + watermark + encode), per-stage
milliseconds per frame, and peak RSS.

    python benchmarks/bench_pipeline.py [--seconds 10 60] [--size 1280x720]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(clip: str, output: str) -> None:
    from masquerade.api import swap
    from masquerade.config import RunConfig, SelectOptions

    started = time.perf_counter()
    summary = swap([ROOT / "examples" / "obama.jpg"], clip, output,
                   RunConfig(select=SelectOptions(mode="all")))
    wall = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({
        "frames": summary.frames, "faces": summary.faces_swapped, "seconds": wall,
        "stage_ms": {k: 1000 * v / max(summary.frames, 1) for k, v in summary.stage_seconds.items()},
        "peak_rss_mib": peak_kib / 1024,
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    sys.path.insert(0, str(ROOT / "examples"))
    from make_sample_clip import make_benchmark_clip

    width, height = (int(v) for v in args.size.split("x"))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seconds in args.seconds:
            clip = Path(tmp) / f"clip_{seconds:g}s.mp4"
            make_benchmark_clip(clip, seconds, size=(width, height))
            out = Path(tmp) / f"out_{seconds:g}s.mp4"
            result = subprocess.run([sys.executable, __file__, "--child", str(clip), str(out)],
                                    capture_output=True, text=True, check=True)
            stats = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append((seconds, stats))
    print(f"{'clip':>6} {'frames':>6} {'faces':>6} {'fps':>6} {'peak RSS':>9}  per-stage ms/frame")
    for seconds, s in rows:
        stages = " ".join(f"{k}={v:.1f}" for k, v in sorted(s["stage_ms"].items()))
        print(f"{seconds:>5g}s {s['frames']:>6} {s['faces']:>6} {s['frames'] / s['seconds']:>6.1f} "
              f"{s['peak_rss_mib']:>7.0f}MiB  {stages}")


if __name__ == "__main__":
    main()
