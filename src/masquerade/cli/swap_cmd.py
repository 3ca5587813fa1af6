"""`masquerade swap`: parse, call the API, show progress and a one-line summary."""

from __future__ import annotations

import argparse
import sys

from masquerade.api import RunHooks, RunSummary, swap
from masquerade.cli.parser import config_from_args
from masquerade.types import FrameContext


class ProgressHooks(RunHooks):
    """A tqdm bar for videos (frames, fps, ETA) on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None

    def on_start(self, kind: str, total_frames: int | None) -> None:
        if kind == "video" and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total_frames, unit="frame", desc="swapping", file=sys.stderr,
                            dynamic_ncols=True)

    def on_notice(self, message: str) -> None:
        print(f"masquerade: note: {message}", file=sys.stderr)

    def on_frame(self, frame: FrameContext) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def on_end(self, summary: RunSummary) -> None:
        self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run(args: argparse.Namespace) -> int:
    if args.cluster is not None:
        from masquerade.cli.cluster_cmd import run_on_cluster

        return run_on_cluster(args, [args.target], [args.output])
    config = config_from_args(args)
    hooks = ProgressHooks(args.quiet)
    try:
        summary = swap(args.source, args.target, args.output, config, hooks)
    finally:
        hooks.close()
    for warning in summary.warnings:
        print(f"masquerade: warning: {warning}", file=sys.stderr)
    if not args.quiet:
        print(summary_line(summary))
    return 0


def summary_line(summary: RunSummary) -> str:
    faces = f"{summary.faces_swapped} face{'s' if summary.faces_swapped != 1 else ''} swapped"
    if summary.kind == "image":
        return f"{summary.output}: {faces} in {summary.seconds:.1f} s"
    return (f"{summary.output}: {summary.frames} frames, {faces}, {summary.seconds:.1f} s, "
            f"{summary.fps:.1f} fps")
