"""Script form of ``masquerade bench`` (same library, same table), for runs from a checkout.

    python benchmarks/bench_engine.py                       # 720p + 1080p, 1 and 4 faces, neural rows
    python benchmarks/bench_engine.py --sizes 720p --faces 1 --no-neural --memory-check

Every option of ``masquerade bench`` is accepted; see ``--help``.
"""

from __future__ import annotations

import argparse
import sys

from masquerade.cli import bench_cmd


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_engine.py", description=__doc__.splitlines()[0])
    bench_cmd.register(parser.add_subparsers(dest="command"))
    return bench_cmd.run(parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    sys.exit(main())
