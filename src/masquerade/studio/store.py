"""The job queue and the file records, in SQLite (WAL) inside the data dir.

Every job a worker runs is *claimed* with a fresh random token; a worker's writes (progress, outputs,
the final state) only land while its claim is the job's claim. A server that restarts re-queues the
jobs that were running and clears their claims, so a worker of the old server that somehow lives on
can no longer change them: a job is never recorded done twice.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from masquerade.studio.datadir import new_id

JobState = Literal["queued", "running", "done", "failed", "cancelled"]
TERMINAL: tuple[str, ...] = ("done", "failed", "cancelled")
MAX_ATTEMPTS = 3
"""A job whose worker process died this many times while running it is failed, not retried forever."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL,
    width INTEGER, height INTEGER, frames INTEGER, fps REAL, size INTEGER NOT NULL,
    parent TEXT, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, position INTEGER NOT NULL, state TEXT NOT NULL, request TEXT NOT NULL,
    progress REAL NOT NULL DEFAULT 0, fps REAL, eta_s REAL, error TEXT, claim TEXT, worker INTEGER,
    cancel INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, started REAL, finished REAL
);
CREATE TABLE IF NOT EXISTS outputs (
    job TEXT NOT NULL, k INTEGER NOT NULL, target TEXT NOT NULL, path TEXT NOT NULL,
    faces_swapped INTEGER NOT NULL, warnings TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (job, k)
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (state, position);
"""


@dataclass(frozen=True)
class FileRecord:
    id: str
    name: str
    """The client's file name, for display only: never used as a path."""
    kind: Literal["image", "video"]
    path: str
    """Relative to the data dir; chosen by the server."""
    width: int
    height: int
    frames: int | None
    fps: float | None
    size: int
    parent: str | None = None
    """For a face thumbnail: the file it was cut from."""

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "kind": self.kind, "width": self.width,
                "height": self.height, "frames": self.frames, "fps": self.fps, "size": self.size}


@dataclass(frozen=True)
class OutputRecord:
    k: int
    target: str
    path: str
    faces_swapped: int
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    id: str
    position: int
    state: JobState
    request: dict[str, Any]
    progress: float
    fps: float | None
    eta_s: float | None
    error: str | None
    claim: str | None
    worker: int | None
    cancel: bool
    attempts: int
    created: float
    started: float | None
    finished: float | None
    outputs: tuple[OutputRecord, ...] = ()

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": self.state, "progress": round(self.progress, 4),
            "fps": None if self.fps is None else round(self.fps, 2),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            "error": self.error, "position": self.position,
            "sources": self.request["sources"], "targets": self.request["targets"],
            "options": self.request["options"], "cancel_requested": self.cancel,
            "created": self.created, "started": self.started, "finished": self.finished,
            "outputs": [{"k": o.k, "target": o.target, "url": f"/api/jobs/{self.id}/outputs/{o.k}",
                         "faces_swapped": o.faces_swapped, "warnings": o.warnings,
                         "kind": "video" if o.path.endswith((".mp4", ".mkv")) else "image"}
                        for o in self.outputs],
        }


class JobStore:
    """A thin typed layer over the database; each call uses its own short-lived connection, so the
    API's threads, the SSE watcher and the worker processes never share one."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _connect(self, write: bool = False) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA busy_timeout = 30000")
            if write:
                db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                if write:
                    db.execute("ROLLBACK")
                raise
            if write:
                db.execute("COMMIT")
        finally:
            db.close()

    def initialise(self) -> None:
        with self._connect() as db:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)

    def watcher(self) -> sqlite3.Connection:
        """A connection of its own whose ``PRAGMA data_version`` changes when anyone else commits."""
        return sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)

    # -- files ----------------------------------------------------------------------------------
    def add_file(self, record: FileRecord) -> None:
        with self._connect(write=True) as db:
            db.execute("INSERT INTO files VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                       (record.id, record.name, record.kind, record.path, record.width, record.height,
                        record.frames, record.fps, record.size, record.parent, time.time()))

    def file(self, file_id: str) -> FileRecord | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
        return None if row is None else _file(row)

    def delete_file(self, file_id: str) -> list[str]:
        """Forget a file and the face thumbnails cut from it; return their stored paths."""
        with self._connect(write=True) as db:
            rows = db.execute("SELECT path FROM files WHERE id = ? OR parent = ?", (file_id,
                file_id)).fetchall()
            db.execute("DELETE FROM files WHERE id = ? OR parent = ?", (file_id, file_id))
        return [row["path"] for row in rows]

    # -- jobs -----------------------------------------------------------------------------------
    def add_job(self, request: dict[str, Any]) -> Job:
        job_id = new_id()
        with self._connect(write=True) as db:
            position = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM jobs").fetchone()[0]
            db.execute("INSERT INTO jobs (id, position, state, request, created) VALUES (?,?,?,?,?)",
                       (job_id, position, "queued", json.dumps(request), time.time()))
        job = self.job(job_id)
        assert job is not None
        return job

    def job(self, job_id: str) -> Job | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            return _job(row, _outputs(db, [job_id]).get(job_id, ()))

    def jobs(self) -> list[Job]:
        """Every job, in queue order."""
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY position").fetchall()
            outputs = _outputs(db, None)
        return [_job(row, outputs.get(row["id"], ())) for row in rows]

    def cancel(self, job_id: str) -> Job | None:
        """A queued job is cancelled at once; a running one is asked to stop (its worker ends it)."""
        with self._connect(write=True) as db:
            db.execute("UPDATE jobs SET state = 'cancelled', finished = ? WHERE id = ? AND state = 'queued'",
                       (time.time(), job_id))
            db.execute("UPDATE jobs SET cancel = 1 WHERE id = ? AND state = 'running'", (job_id,))
        return self.job(job_id)

    def retry(self, job_id: str) -> Job | None:
        """Put a failed or cancelled job back at the end of the queue (finished targets are kept)."""
        with self._connect(write=True) as db:
            position = db.execute("SELECT COALESCE(MAX(position) + 1, 0) FROM jobs").fetchone()[0]
            db.execute("UPDATE jobs SET state = 'queued', position = ?, error = NULL, cancel = 0, "
                       "fps = NULL, eta_s = NULL, attempts = 0, started = NULL, finished = NULL, "
                       "claim = NULL WHERE id = ? AND state IN ('failed', 'cancelled')", (position, job_id))
        return self.job(job_id)

    def move(self, job_id: str, position: int) -> Job | None:
        """Move a job to ``position`` (0-based, clamped) of the queue order; the others keep theirs."""
        with self._connect(write=True) as db:
            ids = [row[0] for row in db.execute("SELECT id FROM jobs ORDER BY position")]
            if job_id not in ids:
                return None
            ids.remove(job_id)
            ids.insert(max(0, min(position, len(ids))), job_id)
            db.executemany("UPDATE jobs SET position = ? WHERE id = ?", list(enumerate(ids)))
        return self.job(job_id)

    def delete(self, job_id: str) -> list[str] | None:
        """Forget a job (a running one is stopped by its worker); return its outputs' stored paths."""
        with self._connect(write=True) as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
                return None
            paths = [row[0] for row in db.execute("SELECT path FROM outputs WHERE job = ?", (job_id,))]
            db.execute("DELETE FROM outputs WHERE job = ?", (job_id,))
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
        return paths

    # -- the worker's side ----------------------------------------------------------------------
    def claim_next(self, worker: int) -> tuple[Job, str] | None:
        """Take the first queued job for ``worker``; return it with the claim token."""
        claim = new_id()
        with self._connect(write=True) as db:
            row = db.execute("SELECT id FROM jobs WHERE state = 'queued' ORDER BY position "
                             "LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute("UPDATE jobs SET state = 'running', claim = ?, worker = ?, attempts = attempts + 1, "
                       "started = ?, progress = 0, fps = NULL, eta_s = NULL WHERE id = ?",
                       (claim, worker, time.time(), row[0]))
        job = self.job(row[0])
        return None if job is None else (job, claim)

    def report(self, job_id: str, claim: str, progress: float, fps: float | None,
               eta_s: float | None) -> bool:
        """Record progress; False when the job should stop (cancel asked, deleted or re-claimed)."""
        with self._connect(write=True) as db:
            changed = db.execute("UPDATE jobs SET progress = ?, fps = ?, eta_s = ? "
                                 "WHERE id = ? AND claim = ?",
                                 (progress, fps, eta_s, job_id, claim)).rowcount
            row = db.execute("SELECT cancel FROM jobs WHERE id = ? AND claim = ?", (job_id, claim)).fetchone()
        return bool(changed) and row is not None and not row[0]

    def add_output(self, job_id: str, claim: str, output: OutputRecord) -> bool:
        """Record one finished output; False (nothing recorded) when the claim is no longer the job's."""
        with self._connect(write=True) as db:
            if db.execute("SELECT 1 FROM jobs WHERE id = ? AND claim = ?", (job_id,
                claim)).fetchone() is None:
                return False
            db.execute("INSERT OR REPLACE INTO outputs VALUES (?,?,?,?,?,?)",
                       (job_id, output.k, output.target, output.path, output.faces_swapped,
                        json.dumps(output.warnings)))
        return True

    def finish(self, job_id: str, claim: str, state: JobState, error: str | None = None) -> bool:
        with self._connect(write=True) as db:
            progress = ", progress = 1, eta_s = 0" if state == "done" else ""
            return bool(db.execute(
                f"UPDATE jobs SET state = ?, error = ?, finished = ?, claim = NULL{progress} "
                "WHERE id = ? AND claim = ?", (state, error, time.time(), job_id, claim)).rowcount)

    def requeue_running(self, worker: int | None = None, graceful: bool = False) -> list[str]:
        """Put running jobs (of one worker, or all) back in the queue, keeping their place.

        ``graceful``: the server is stopping on purpose (Ctrl-C), the attempt does not count.
        Otherwise a worker died under the job; one that has taken ``MAX_ATTEMPTS`` workers down
        with it is failed instead of being retried forever."""
        where, args = ("state = 'running'", ()) if worker is None else ("state = 'running' AND worker = ?",
                                                                        (worker,))
        with self._connect(write=True) as db:
            ids = [row[0] for row in db.execute(f"SELECT id FROM jobs WHERE {where}", args)]
            if graceful:
                db.execute(f"UPDATE jobs SET attempts = MAX(attempts - 1, 0) WHERE {where}", args)
            else:
                db.execute(f"UPDATE jobs SET state = 'failed', claim = NULL, finished = ?, error = "
                           f"'the worker process stopped while running this job {MAX_ATTEMPTS} times' "
                           f"WHERE {where} AND attempts >= {MAX_ATTEMPTS}", (time.time(), *args))
            db.execute(f"UPDATE jobs SET state = 'queued', claim = NULL, worker = NULL, fps = NULL, "
                       f"eta_s = NULL, cancel = 0 WHERE {where}", args)
        return ids

    def output(self, job_id: str, k: int) -> OutputRecord | None:
        with self._connect() as db:
            return next((o for o in _outputs(db, [job_id]).get(job_id, ()) if o.k == k), None)


def _file(row: sqlite3.Row) -> FileRecord:
    return FileRecord(id=row["id"], name=row["name"], kind=row["kind"], path=row["path"], width=row["width"],
                      height=row["height"], frames=row["frames"], fps=row["fps"], size=row["size"],
                      parent=row["parent"])


def _job(row: sqlite3.Row, outputs: tuple[OutputRecord, ...]) -> Job:
    return Job(id=row["id"], position=row["position"], state=row["state"], request=json.loads(row["request"]),
               progress=row["progress"], fps=row["fps"], eta_s=row["eta_s"], error=row["error"],
               claim=row["claim"], worker=row["worker"], cancel=bool(row["cancel"]), attempts=row["attempts"],
               created=row["created"], started=row["started"], finished=row["finished"], outputs=outputs)


def _outputs(db: sqlite3.Connection, job_ids: list[str] | None) -> dict[str, tuple[OutputRecord, ...]]:
    if job_ids is None:
        rows = db.execute("SELECT * FROM outputs ORDER BY job, k").fetchall()
    else:
        marks = ",".join("?" * len(job_ids))
        rows = db.execute(f"SELECT * FROM outputs WHERE job IN ({marks}) ORDER BY job, k", job_ids).fetchall()
    found: dict[str, list[OutputRecord]] = {}
    for row in rows:
        found.setdefault(row["job"], []).append(
            OutputRecord(k=row["k"], target=row["target"], path=row["path"],
                         faces_swapped=row["faces_swapped"], warnings=json.loads(row["warnings"])))
    return {job: tuple(items) for job, items in found.items()}
