"""`make demo`: swap the bundled sample face into the bundled sample image and video.

It runs the same commands a user would type, then checks each result with `masquerade verify`.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from masquerade.cli.main import main

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "out"

JOBS = [
    ["swap", "-s", "examples/astronaut.png", "-t", "examples/obama.jpg", "-o", "out/obama_swapped.jpg"],
    ["swap", "-s", "examples/obama.jpg", "-t", "examples/biden.jpg", "-o", "out/biden_swapped.png"],
    ["swap", "-s", "examples/astronaut.png", "-t", "examples/sample.mp4", "-o", "out/sample_swapped.mp4"],
]


def run(argv: list[str]) -> None:
    print(f"$ masquerade {shlex.join(argv)}", flush=True)
    code = main(argv)
    if code != 0:
        sys.exit(code)


if __name__ == "__main__":
    os.chdir(HERE.parent)
    OUT.mkdir(exist_ok=True)
    for job in JOBS:
        run(job)
    outputs = [job[job.index("-o") + 1] for job in JOBS]
    run(["verify", *outputs])
    print("\nResults:")
    for output in outputs:
        print(f"  {(HERE.parent / output).resolve()}")
