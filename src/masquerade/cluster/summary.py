"""What a cluster run reports: per file, in all, and to a progress display as it goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from masquerade.api import RunSummary
from masquerade.cluster.worker import WorkerInfo
from masquerade.errors import MasqueradeError


@dataclass(frozen=True)
class FileFailure:
    """A target whose output could not be made (the others go on)."""

    target: Path
    output: Path
    error: MasqueradeError

    @property
    def message(self) -> str:
        text = str(self.error) or type(self.error).__name__
        return text if str(self.target) in text else f"{self.target}: {text}"


@dataclass
class ClusterSummary:
    """What a cluster run did, per file and in all."""

    files: list[RunSummary] = field(default_factory=list)
    """The outputs in place, in the order of the targets."""
    failures: list[FileFailure] = field(default_factory=list)
    """Targets that failed (unreadable, refused...), in the order of the targets."""
    segments: int = 0
    """Video segments the run needed."""
    reused: int = 0
    """Segments found finished in the store (from a run that did not complete)."""
    computed: int = 0
    """Segments this run had workers do."""
    workers: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``plan`` (hashing and reading the targets' packets), ``start`` (connecting and the
    workers' models), ``cut`` (the driver cutting segments out and handing them over), ``store``
    (keeping finished segments), ``join`` (joining and labelling); and, added up over the workers,
    ``segments`` (whole segment tasks) of which ``warmup`` (reaching each segment's first frame)."""

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)

    @property
    def faces_swapped(self) -> int:
        return sum(f.faces_swapped for f in self.files)


class ClusterHooks:
    """What a progress display hears; the library itself never prints."""

    def on_notice(self, message: str) -> None:
        """A message the user must see (e.g. a model's licence terms)."""

    def on_start(self, files: int, frames: int, done: int) -> None:
        """The work is planned: ``frames`` in all, ``done`` of them already finished in the store."""

    def on_workers(self, workers: Sequence[WorkerInfo]) -> None:
        """The workers are up, models loaded."""

    def on_progress(self, frames: int) -> None:
        """``frames`` more frames are finished (a segment or an image)."""

    def on_file(self, summary: RunSummary) -> None:
        """One output is in place."""

    def on_failure(self, failure: FileFailure) -> None:
        """One target failed; the others go on."""

    def on_end(self, summary: ClusterSummary) -> None:
        """Every output is in place."""
