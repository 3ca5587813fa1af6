"""Finished segments, kept until their output is in place, so a run that dies is resumed, not redone.

A job's folder is named by a key from everything that decides its pixels: the target's content
(SHA-256), the sources' and the reference's content, the run's options (less those that only change
speed), the split (segment length, warm-up), the output format and masquerade's version. Each segment
is a file named by its range of frames and pts, written atomically beside a small record of what its
run did: a file that is there is complete. A run with another key never sees it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from masquerade._version import __version__
from masquerade.config import RunConfig
from masquerade.errors import OutputError
from masquerade.media.atomic import atomic_output
from masquerade.media.segments import Segment
from masquerade.models.download import sha256_file
from masquerade.split import SegmentResult

FORMAT = 2
"""Of a segment's record (2: it counts the frames changed, for the label)."""


def settings_digest(config: RunConfig, sources: Sequence[Path], segment_seconds: float,
                    warmup_seconds: float) -> str:
    """SHA-256 of the options and inputs (other than the target) that decide a segment's pixels."""
    # Threads and workers change speed, not pixels; the model folder's files are checked by hash.
    runtime = dataclasses.replace(config.runtime, execution_threads=None, frame_workers=None, models_dir=None)
    select = config.select
    reference = select.reference
    mapping = [[sha256_file(e.reference), [sha256_file(p) for p in e.sources]] for e in select.mapping]
    select = dataclasses.replace(select, reference=None, mapping=())
    settings = dataclasses.asdict(dataclasses.replace(config, runtime=runtime, select=select))
    record = {
        "version": __version__,
        "format": FORMAT,
        "settings": settings,
        "sources": [sha256_file(Path(p)) for p in sources],
        "reference": sha256_file(Path(reference)) if reference is not None else None,
        "mapping": mapping,
        "split": [segment_seconds, warmup_seconds],
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


class SegmentStore:
    """The segment folders of all jobs, under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def job(self, target: Path, settings: str, suffix: str) -> JobFolder:
        """The folder of one target's segments for these settings (``suffix``: the output format)."""
        key = hashlib.sha256(f"{sha256_file(Path(target))}:{settings}:{suffix.lower()}".encode()).hexdigest()
        return JobFolder(self.root / key[:32], suffix.lower())


class JobFolder:
    """One job's finished segments."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path = path
        self.suffix = suffix

    def _name(self, segment: Segment) -> str:
        return f"{segment.first:08d}+{segment.count}_{segment.output_pts}-{segment.end_pts}"

    def segment_file(self, segment: Segment) -> Path:
        return self.path / f"{self._name(segment)}{self.suffix}"

    def has(self, segment: Segment) -> bool:
        return self.segment_file(segment).is_file()

    def result(self, segment: Segment) -> SegmentResult:
        """What the run that made a stored segment did (frames, faces, stage times)."""
        record = json.loads((self.path / f"{self._name(segment)}.json").read_text())
        return SegmentResult(**record)

    def put(self, segment: Segment, data: bytes, result: SegmentResult) -> Path:
        """Keep one finished segment: its record first, then the file, each renamed into place."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            _write_atomic(self.path / f"{self._name(segment)}.json",
                          json.dumps(dataclasses.asdict(result)).encode())
            return _write_atomic(self.segment_file(segment), data)
        except OSError as exc:
            raise OutputError(f"cannot keep a finished segment in {self.path}: {exc.strerror}") from exc

    def remove(self) -> None:
        """Drop the job's segments (its output is in place, or its content was refused)."""
        shutil.rmtree(self.path, ignore_errors=True)


def _write_atomic(path: Path, data: bytes) -> Path:
    """``data`` into ``path``, on disk before the rename: a file that is there is complete."""
    with atomic_output(path) as temp, open(temp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    return path
