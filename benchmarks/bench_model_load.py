"""What hashing a model on every load costs: the inswapper-sized stand-in (architecture-faithful, random
weights, the real file's size), loaded as a run loads it.

- hash: ``read_hashed`` alone (one read of the file, SHA-256 of those bytes), page cache warm;
- before: ONNX Runtime from the path (what runs did when a size + mtime stamp was trusted);
- after: ``ModelStore.load`` (read once, hash) + ONNX Runtime from those bytes, as a run does now.

Each is the best of ``--repeat`` runs; peak RSS is measured in a fresh process per way.

Run:  .venv/bin/python benchmarks/bench_model_load.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

CHILD = """
import resource, sys, time
from pathlib import Path
from masquerade.models.runtime import new_session
from masquerade.models.store import read_hashed
path, way = Path(sys.argv[1]), sys.argv[2]
start = time.perf_counter()
if way == "path":
    session = new_session(path, "cpu", 1)
else:
    data, digest = read_hashed(path)
    session = new_session(data, "cpu", 1)
    del data
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from masquerade.models.manifest import get_spec
    from masquerade.models.standins import to_bytes
    from masquerade.models.standins_arch import inswapper_arch
    from masquerade.models.store import ModelStore, read_hashed

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inswapper_128.onnx"
        model, _ = inswapper_arch()
        path.write_bytes(to_bytes(model))
        del model
        size = path.stat().st_size
        digest = read_hashed(path)[1]
        spec = replace(get_spec("inswapper_128"), sha256=(digest,))
        store = ModelStore(Path(tmp), models={spec.name: spec})
        print(f"load average {os.getloadavg()[0]:.1f}; file {size / 1e6:.0f} MB")
        hashed = best(lambda: read_hashed(path), args.repeat)
        print(f"read + SHA-256: {hashed * 1000:.0f} ms ({size / hashed / 1e9:.2f} GB/s)")
        print(f"ModelStore.load: {best(lambda: store.load(spec), args.repeat) * 1000:.0f} ms")
        for way in ("path", "bytes"):
            command = [sys.executable, "-c", CHILD, str(path), way]
            runs = [subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
                    for _ in range(args.repeat)]
            seconds = min(float(r[0]) for r in runs)
            rss = min(float(r[1]) for r in runs)
            label = "before: ORT from the path" if way == "path" else "after: read, hash, ORT from the bytes"
            print(f"{label}: {seconds * 1000:.0f} ms, peak RSS {rss:.0f} MiB")
        print(f"load average {os.getloadavg()[0]:.1f}; this process peak RSS "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
