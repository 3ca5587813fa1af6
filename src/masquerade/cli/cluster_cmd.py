"""`masquerade swap ... --cluster ray[:ADDRESS]`: one bar over every frame of the run, a line per file.

Imported only when ``--cluster`` is given (Ray itself only once the run starts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from masquerade.api import RunSummary
from masquerade.cli.parser import config_from_args
from masquerade.cli.signals import interrupted_text, signal_of
from masquerade.cli.swap_cmd import summary_line
from masquerade.cluster import ClusterHooks, ClusterOptions, FileFailure, WorkerInfo, parse_cluster, swap
from masquerade.cluster.connect import require_ray
from masquerade.errors import Cancelled


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    given = {"workers": args.cluster_workers, "cpus_per_worker": args.cluster_cpus,
             "segment_seconds": args.segment_seconds, "store": args.cluster_store}
    return ClusterOptions(address=parse_cluster(args.cluster),
                          **{k: v for k, v in given.items() if v is not None})


def run_on_cluster(args: argparse.Namespace, targets: Sequence[Path], outputs: Sequence[Path]) -> int:
    options = cluster_options(args)
    require_ray()  # before any work: without the extra, --cluster is one line naming it
    hooks = ClusterProgress(args.quiet)
    try:
        summary = swap(args.source, targets, outputs, config_from_args(args), options, hooks)
    except KeyboardInterrupt as interrupt:
        done = [str(s.output) for s in hooks.written]
        written = f"; written: {', '.join(done)}" if done else "; no output was written"
        raise Cancelled(f"{interrupted_text(signal_of(interrupt))}{written}; the finished segments are "
                        "kept: run the same command again to go on", signal_of(interrupt)) from None
    finally:
        hooks.close()
    if len(targets) == 1 and summary.failures:
        raise summary.failures[0].error  # one target: the same error and exit status as one machine
    for result in summary.files:
        for warning in result.warnings:
            print(f"masquerade: warning: {warning}", file=sys.stderr)
        if not args.quiet:
            print(summary_line(result))
    if not args.quiet:
        reused = f", {summary.reused} found finished" if summary.reused else ""
        print(f"cluster: {_count(summary.segments, 'segment')}{reused} on "
              f"{_count(summary.workers, 'worker')}, {summary.seconds:.1f} s")
    return 1 if summary.failures else 0


class ClusterProgress(ClusterHooks):
    """A tqdm bar over the frames of every file, on stderr."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar = None
        self.written: list[RunSummary] = []

    def on_file(self, summary: RunSummary) -> None:
        self.written.append(summary)

    def on_notice(self, message: str) -> None:
        self._say(f"masquerade: note: {message}")

    def on_start(self, files: int, frames: int, done: int) -> None:
        if not self.quiet:
            from tqdm import tqdm

            self.bar = tqdm(total=frames, initial=done, unit="frame", file=sys.stderr, dynamic_ncols=True,
                            desc=f"swapping {_count(files, 'file')} on the cluster")

    def on_workers(self, workers: Sequence[WorkerInfo]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{_count(len(workers), 'worker')} on "
                                     f"{_count(len({w.host for w in workers}), 'node')}")

    def on_progress(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.update(frames)

    def on_failure(self, failure: FileFailure) -> None:
        self._say(f"masquerade: error: {failure.message}")

    def _say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
