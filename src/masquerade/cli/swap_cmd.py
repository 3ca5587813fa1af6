"""`masquerade swap`: parse, call the API, show progress and a one-line summary."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from masquerade.api import RunHooks, RunSummary, swap
from masquerade.cli.parser import check_cluster_args, config_from_args
from masquerade.cli.signals import interrupted_text, signal_of
from masquerade.errors import Cancelled
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
    check_cluster_args(args)
    if args.cluster is not None:
        from masquerade.cli.cluster_cmd import run_on_cluster

        return run_on_cluster(args, [args.target], [args.output])
    config = config_from_args(args)
    hooks = ProgressHooks(args.quiet)
    before = _file_identity(args.output)
    try:
        summary = swap(args.source, args.target, args.output, config, hooks)
    except KeyboardInterrupt as interrupt:
        # Say what became of the output: an interrupt can land after the final rename.
        signum = signal_of(interrupt)
        if _file_identity(args.output) not in (None, before):
            raise Cancelled(f"{interrupted_text(signum)} after {args.output} was written: it is complete, "
                            "watermarked and labelled", signum) from None
        kept = f" ({args.output} is as it was)" if before is not None else ""
        raise Cancelled(f"{interrupted_text(signum)}; no output was written{kept}", signum) from None
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


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, modification time) of ``path``, None when there is no file: a completed run
    replaces the file, so the identity changes."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino, info.st_mtime_ns
