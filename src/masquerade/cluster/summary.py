"""What a cluster run reports: per file (as a batch does), in all, and to a progress display as it goes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from masquerade.batch import BatchSummary, FileResult
from masquerade.cluster.worker import WorkerInfo


@dataclass
class ClusterSummary(BatchSummary):
    """What a cluster run did: ``results`` per target, in the order of the targets, and in all."""

    segments: int = 0
    """Video segments the run needed."""
    reused: int = 0
    """Segments found finished in the store (from a run that did not complete)."""
    computed: int = 0
    """Segments this run had workers do."""
    workers: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds: ``plan`` (hashing and reading the targets' packets), ``start`` (connecting, the workers'
    models and the run's identities), ``cut`` (the driver cutting segments out and handing them over),
    ``store`` (keeping finished segments), ``join`` (joining and labelling); and, added up over the
    workers, ``segments`` (whole segment tasks) of which ``warmup`` (reaching each segment's first
    frame)."""

    @property
    def frames(self) -> int:
        return sum(r.summary.frames for r in self.done if r.summary is not None)

    @property
    def faces_swapped(self) -> int:
        return sum(r.summary.faces_swapped for r in self.done if r.summary is not None)


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

    def on_file_end(self, result: FileResult) -> None:
        """One target is done: its output is in place, or it failed (the others go on)."""

    def on_end(self, summary: ClusterSummary) -> None:
        """Every target is done."""
