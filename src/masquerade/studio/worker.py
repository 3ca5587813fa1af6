"""The worker process: takes queued jobs in order and runs them through ``masquerade.swap``.

Run by the server as ``python -m masquerade.studio.worker DATA_DIR NUMBER PARENT_PID``. It dies with
its server (Linux: the kernel's parent-death signal; elsewhere: it notices its parent is gone), so a
killed server leaves no worker running behind the next one. SIGINT and SIGTERM stop the current job
at once (its half-written output is removed) and end the process; the server re-queues the job.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from masquerade import Pipeline, RunConfig, RunHooks, RunSummary, swap
from masquerade.config import config_for_kind
from masquerade.errors import Cancelled, ContentRefused, MasqueradeError, MediaError
from masquerade.studio.datadir import DataDir
from masquerade.studio.media import output_suffix
from masquerade.studio.options import run_config
from masquerade.studio.store import FileRecord, Job, JobStore, OutputRecord

IDLE_POLL_S = 0.25
REPORT_EVERY_S = 0.2
"""Progress is written at most this often (the page hears of every write through SSE)."""


class Stop(BaseException):
    """The worker is asked to end (signal); not an error of the job."""


class JobStopped(Cancelled):
    """The job was cancelled, deleted or taken over while it ran."""


@dataclass
class _Progress:
    """Overall progress of a job over its targets: finished targets plus the share of the current one."""

    targets: int
    done: int = 0
    frames: int = 0
    total: int | None = None
    started: float = 0.0

    def fraction(self) -> float:
        current = self.frames / self.total if self.total else 0.0
        return min(1.0, (self.done + min(current, 1.0)) / self.targets)


class JobHooks(RunHooks):
    """Progress into the job's row; stops the run when the job was cancelled."""

    def __init__(self, store: JobStore, job_id: str, claim: str, progress: _Progress, began: float) -> None:
        self.store, self.job_id, self.claim, self.progress, self.began = store, job_id, claim, progress, began
        self.last = 0.0

    def on_start(self, kind: str, total_frames: int | None) -> None:
        self.progress.frames, self.progress.total = 0, total_frames
        self.progress.started = time.perf_counter()
        self.report(force=True)

    def on_frame(self, frame: Any) -> None:
        self.progress.frames += 1
        self.report()

    def report(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self.last < REPORT_EVERY_S:
            return
        self.last = now
        fraction = self.progress.fraction()
        elapsed = now - self.progress.started
        fps = self.progress.frames / elapsed if self.progress.frames and elapsed > 0 else None
        overall = now - self.began
        eta = overall * (1 - fraction) / fraction if fraction > 0.01 else None
        if not self.store.report(self.job_id, self.claim, fraction, fps, eta):
            raise JobStopped("cancelled")


class JobRunner:
    """Runs claimed jobs; keeps the last pipeline so jobs with the same models do not load them again."""

    def __init__(self, data: DataDir, store: JobStore) -> None:
        self.data, self.store = data, store
        self._last: Pipeline | None = None

    def pipeline(self, config: RunConfig) -> Pipeline:
        """A pipeline for this job's config: the last job's when the options are the same, else one on
        the last job's models when the models are the same (one set in memory at a time)."""
        if self._last is not None and self._last.config == config:
            return self._last  # the same options as the last job: nothing to build
        self._last = self._last.reconfigured(config) if self._last is not None else Pipeline(config)
        return self._last

    def run(self, job: Job, claim: str) -> None:
        files: dict[str, FileRecord] = {}
        try:
            self._run(job, claim, files)
        except JobStopped:
            self.store.finish(job.id, claim, "cancelled")
        except ContentRefused as error:
            refused = self._refused_file(str(error), files, job)
            message = self._message(error, files)
            if refused in job.request["targets"] and refused in files:  # the guard says only "target"
                message = message.replace("target", f"target {files[refused].name}", 1)
            self.store.finish(job.id, claim, "failed", message)
            if refused is not None:
                self._delete_file(refused)
        except MasqueradeError as error:
            self.store.finish(job.id, claim, "failed", self._message(error, files))
        except Exception as error:  # a bug of ours: the job fails with a line, the queue goes on
            traceback.print_exc(file=sys.stderr)
            self.store.finish(job.id, claim, "failed", f"internal error: {type(error).__name__}: {error}")

    def _run(self, job: Job, claim: str, files: dict[str, FileRecord]) -> None:
        request = job.request
        for file_id in [*request["sources"], *request["targets"]]:
            record = self.store.file(file_id)
            if record is None:
                raise MediaError(f"file {file_id} was deleted before the job ran")
            files[file_id] = record

        def file_path(file_id: str) -> Path | None:
            record = self.store.file(file_id)
            if record is not None:
                files[file_id] = record
            return None if record is None else self.data.inside(record.path)

        config = run_config(request["options"], file_path)
        pipeline = self.pipeline(config)
        sources = [self.data.inside(files[i].path) for i in request["sources"]]
        targets = request["targets"]
        done = {o.k for o in job.outputs}
        progress = _Progress(targets=len(targets), done=len(done))
        hooks = JobHooks(self.store, job.id, claim, progress, time.perf_counter())
        for k, target_id in enumerate(targets):
            if k in done:
                continue  # finished before a restart: resumed, not run twice
            hooks.report(force=True)
            target = files[target_id]
            output = self.data.outputs / f"{job.id}-{k}{output_suffix(target.kind, Path(target.path).suffix)}"
            summary: RunSummary = swap(sources, self.data.inside(target.path), output,
                                       config_for_kind(config, target.kind), hooks, pipeline)
            record = OutputRecord(k=k, target=target_id, path=self.data.relative(output),
                                  faces_swapped=summary.faces_swapped,
                                  warnings=[self._message(w, files) for w in summary.warnings])
            if not self.store.add_output(job.id, claim, record):
                output.unlink(missing_ok=True)  # the job was deleted or re-queued meanwhile
                raise JobStopped("the job was deleted")
            progress.done += 1
            progress.frames, progress.total = 0, None
        if not self.store.finish(job.id, claim, "done"):
            raise JobStopped("the job was deleted")

    def _message(self, error: object, files: dict[str, FileRecord]) -> str:
        """The error's one line, with stored paths replaced by the names the user gave the files."""
        message = str(error)
        for record in files.values():
            message = message.replace(str(self.data.inside(record.path)), record.name)
        return self.data.hide(message)

    def _refused_file(self, message: str, files: dict[str, FileRecord], job: Job) -> str | None:
        for file_id, record in files.items():
            if str(self.data.inside(record.path)) in message:
                return file_id
        # The guard names sources (and references) by path, a target as "target" / "the target video".
        return self._current_target(job)

    def _current_target(self, job: Job) -> str | None:
        latest = self.store.job(job.id)
        finished = {o.k for o in latest.outputs} if latest else set()
        pending = [t for k, t in enumerate(job.request["targets"]) if k not in finished]
        return pending[0] if pending else None

    def _delete_file(self, file_id: str) -> None:
        """A refused input is not kept: its record, its file and its thumbnails go."""
        for relative in self.store.delete_file(file_id):
            with contextlib.suppress(OSError, ValueError):
                self.data.inside(relative).unlink()


def _die_with_parent(parent: int) -> None:
    with contextlib.suppress(Exception):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server died before prctl: do not outlive it
        os._exit(0)


def _stop(signum: int, frame: Any) -> None:
    raise Stop(signum)


def main(argv: list[str]) -> int:
    root, number, parent = Path(argv[0]), int(argv[1]), int(argv[2])
    _die_with_parent(parent)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    data = DataDir(root)
    store = JobStore(data.db)
    runner = JobRunner(data, store)
    try:
        while os.getppid() == parent:
            claimed = store.claim_next(number)
            if claimed is None:
                time.sleep(IDLE_POLL_S)
                continue
            runner.run(*claimed)
    except Stop:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
