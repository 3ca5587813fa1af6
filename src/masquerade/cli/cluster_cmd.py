"""`masquerade swap|enhance ... --cluster ray[:ADDRESS]`: one target, or a batch (several -t, a folder),
on a Ray cluster, with one bar over every frame of the run and the lines a run on one machine prints.

Imported only when ``--cluster`` is given (Ray itself only once the run starts).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from masquerade.batch import FileResult
from masquerade.cli.signals import interrupted_text, signal_of
from masquerade.cli.swap_cmd import VERBS, report_batch, report_file, report_single
from masquerade.cluster import (
    ClusterHooks,
    ClusterOptions,
    ClusterSummary,
    WorkerInfo,
    enhance,
    enhance_many,
    parse_cluster,
    swap,
    swap_many,
)
from masquerade.cluster.connect import require_ray
from masquerade.config import RunConfig
from masquerade.errors import Cancelled


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    given = {"workers": args.cluster_workers, "cpus_per_worker": args.cluster_cpus,
             "segment_seconds": args.segment_seconds, "store": args.cluster_store}
    return ClusterOptions(address=parse_cluster(args.cluster),
                          **{k: v for k, v in given.items() if v is not None})


def run_on_cluster(args: argparse.Namespace, config: RunConfig, action: str, batch: bool) -> int:
    options = cluster_options(args)
    require_ray()  # before any work: without the extra, --cluster is one line naming it
    hooks = ClusterProgress(args.quiet, action, batch)
    sources = getattr(args, "source", None) or []
    try:
        if batch and action == "swap":
            summary = swap_many(sources, args.target, args.output, config, options, hooks)
        elif batch:
            summary = enhance_many(args.target, args.output, config, options, hooks)
        elif action == "swap":
            summary = swap(sources, args.target[0], args.output, config, options, hooks)
        else:
            summary = enhance(args.target[0], args.output, config, options, hooks)
    except KeyboardInterrupt as interrupt:
        hooks.close()
        done = [str(r.output) for r in hooks.written]
        written = f"; written: {', '.join(done)}" if done else "; no output was written"
        raise Cancelled(f"{interrupted_text(signal_of(interrupt))}{written}; the finished segments are "
                        "kept: run the same command again to go on", signal_of(interrupt)) from None
    finally:
        hooks.close()
    if batch:
        status = report_batch(summary, args, action)
    else:
        result = summary.results[0].summary
        assert result is not None  # a single target's error was raised
        report_single(result, args.quiet)
        status = 0
    if not args.quiet:
        reused = f", {summary.reused} found finished" if summary.reused else ""
        print(f"cluster: {_count(summary.segments, 'segment')}{reused} on "
              f"{_count(summary.workers, 'worker')}, {summary.seconds:.1f} s")
    return status


class ClusterProgress(ClusterHooks):
    """A tqdm bar over the frames of every file, on stderr; in a batch, a line per file as it is done."""

    def __init__(self, quiet: bool, action: str, batch: bool) -> None:
        self.quiet, self.action, self.batch = quiet, action, batch
        self.bar = None
        self.written: list[FileResult] = []

    def on_notice(self, message: str) -> None:
        self._say(f"masquerade: note: {message}", sys.stderr)

    def on_start(self, files: int, frames: int, done: int) -> None:
        if not self.quiet:
            from tqdm import tqdm

            what = _count(files, "file") if self.batch else "frames"
            self.bar = tqdm(total=frames, initial=done, unit="frame", file=sys.stderr, dynamic_ncols=True,
                            desc=f"{VERBS[self.action][0]} {what} on the cluster")

    def on_workers(self, workers: Sequence[WorkerInfo]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{_count(len(workers), 'worker')} on "
                                     f"{_count(len({w.host for w in workers}), 'node')}")

    def on_progress(self, frames: int) -> None:
        if self.bar is not None:
            self.bar.update(frames)

    def on_file_end(self, result: FileResult) -> None:
        if result.summary is not None:
            self.written.append(result)
        if self.batch:
            report_file(result, self.quiet, self._say)

    def on_end(self, summary: ClusterSummary) -> None:
        self.close()

    def _say(self, line: str, stream) -> None:
        if self.bar is not None:
            self.bar.write(line, file=stream)
        else:
            print(line, file=stream)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"
