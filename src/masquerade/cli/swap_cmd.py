"""`masquerade swap` and `masquerade enhance`: parse, call the API, show progress and summaries.

One target and an output file: one run. Several targets, a folder, or an output folder: a batch with
a bar over the files, a line per file and a final count; the exit status is 1 if any file failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from masquerade.api import RunHooks, RunSummary, enhance, swap
from masquerade.batch import BatchHooks, BatchSummary, FileResult, enhance_many, swap_many
from masquerade.cli.parser import check_cluster_args, config_from_args
from masquerade.cli.signals import interrupted_text, signal_of
from masquerade.config import RunConfig
from masquerade.errors import Cancelled
from masquerade.types import FrameContext

VERBS = {"swap": ("swapping", "swapped"), "enhance": ("enhancing", "enhanced")}


class ProgressHooks(RunHooks):
    """A tqdm bar for videos (frames, fps, ETA) on stderr."""

    def __init__(self, quiet: bool, desc: str = "swapping", position: int = 0) -> None:
        self.quiet, self.desc, self.position = quiet, desc, position
        self.bar = None

    def on_start(self, kind: str, total_frames: int | None) -> None:
        if kind == "video" and not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=total_frames, unit="frame", desc=self.desc, file=sys.stderr,
                            dynamic_ncols=True, position=self.position, leave=self.position == 0)

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


class BatchProgress(ProgressHooks, BatchHooks):
    """A bar over the files, the frame bar of the current video below it, a line per file."""

    def __init__(self, quiet: bool, action: str) -> None:
        super().__init__(quiet, VERBS[action][0], position=1)
        self.files = None
        self.written = 0

    def on_batch_start(self, total: int) -> None:
        if not self.quiet:
            from tqdm import tqdm

            self.files = tqdm(total=total, unit="file", desc="files", file=sys.stderr, dynamic_ncols=True,
                              position=0)

    def on_file_end(self, result: FileResult) -> None:
        super().close()
        self.written += report_file(result, self.quiet, self._say)
        if self.files is not None:
            self.files.update(1)

    def _say(self, line: str, stream) -> None:
        if self.files is not None:
            self.files.write(line, file=stream)
        else:
            print(line, file=stream)

    def close(self) -> None:
        super().close()
        if self.files is not None:
            self.files.close()
            self.files = None


def report_file(result: FileResult, quiet: bool, say: Callable[[str, TextIO], None]) -> int:
    """Say how one file of a batch went (``say(line, stream)``); 1 if its output was written."""
    if result.summary is None:
        say(f"masquerade: error: {result.error}", sys.stderr)
        return 0
    for warning in result.summary.warnings:
        say(f"masquerade: warning: {warning}", sys.stderr)
    if not quiet:
        say(f"ok: {result.target} -> {summary_line(result.summary)}", sys.stdout)
    return 1


def run(args: argparse.Namespace) -> int:
    check_cluster_args(args)
    config = config_from_args(args)
    action = "enhance" if args.command == "enhance" else "swap"
    targets: list[Path] = args.target
    batch = len(targets) > 1 or targets[0].is_dir() or _is_folder(args.output)
    if args.cluster is not None:
        from masquerade.cli.cluster_cmd import run_on_cluster

        return run_on_cluster(args, config, action, batch)
    if batch:
        return _run_batch(args, config, action)
    hooks = ProgressHooks(args.quiet, VERBS[action][0])
    before = _file_identity(args.output)
    try:
        if action == "enhance":
            summary = enhance(targets[0], args.output, config, hooks)
        else:
            summary = swap(args.source or [], targets[0], args.output, config, hooks)
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
    report_single(summary, args.quiet)
    return 0


def report_single(summary: RunSummary, quiet: bool) -> None:
    for warning in summary.warnings:
        print(f"masquerade: warning: {warning}", file=sys.stderr)
    if not quiet:
        print(summary_line(summary))


def _is_folder(output: Path) -> bool:
    """``-o`` names a folder: an existing one, or a path written with a trailing separator."""
    return output.is_dir() or str(output).endswith(("/", os.sep))


def _run_batch(args: argparse.Namespace, config: RunConfig, action: str) -> int:
    hooks = BatchProgress(args.quiet, action)
    try:
        if action == "enhance":
            result = enhance_many(args.target, args.output, config, hooks)
        else:
            result = swap_many(args.source or [], args.target, args.output, config, hooks)
    except KeyboardInterrupt as interrupt:
        hooks.close()
        raise Cancelled(f"{interrupted_text(signal_of(interrupt))} after {hooks.written} finished file(s); "
                        "the file in progress was not written", signal_of(interrupt)) from None
    finally:
        hooks.close()
    return report_batch(result, args, action)


def report_batch(result: BatchSummary, args: argparse.Namespace, action: str) -> int:
    """The batch's last line; its exit status (1 if any file failed)."""
    failed, total = len(result.failed), len(result.results)
    files = f"file{'s' if total != 1 else ''}"
    line = f"{total - failed} of {total} {files} {VERBS[action][1]} into {args.output}"
    if failed:
        print(f"{line}; {failed} failed", file=sys.stderr)
        return 1
    if not args.quiet:
        print(line)
    return 0


def summary_line(summary: RunSummary) -> str:
    verb = VERBS.get(summary.action, VERBS["swap"])[1]
    faces = f"{summary.faces_swapped} face{'s' if summary.faces_swapped != 1 else ''} {verb}"
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
