"""What a cluster run needs beyond a single machine's ``RunConfig``: where the cluster is, how many
workers and what each asks for, how videos are split, and where finished segments are kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from masquerade.errors import UsageError
from masquerade.split import SEGMENT_SECONDS, WARMUP_SECONDS


@dataclass(frozen=True)
class ClusterOptions:
    address: str | None = None
    """Ray's address: None starts or joins a local cluster (Ray's own rule: ``RAY_ADDRESS``, else the
    cluster last started on this machine, else a new one); ``auto`` joins a running one;
    ``ray://host:port`` connects through Ray Client; ``host:port`` joins a cluster's head."""
    workers: int | None = None
    """Worker actors (each loads the models once); None: as many as the cluster's resources hold."""
    cpus_per_worker: int = 2
    """CPUs each worker asks Ray for; its inference and frame threads follow. On ``torch-cuda`` each
    worker also asks for one GPU."""
    segment_seconds: float = SEGMENT_SECONDS
    """Shortest segment a video is split into (segments start at the source's key frames)."""
    warmup_seconds: float = WARMUP_SECONDS
    """Frames before each segment that are tracked but not written, so the joins match a whole run."""
    store: Path | None = None
    """Folder of finished segments, kept until the output is in place so a run started again redoes
    only what is missing; None: ``cluster/`` in masquerade's cache folder."""

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise UsageError(f"--cluster-workers must be >= 1, got {self.workers}")
        if self.cpus_per_worker < 1:
            raise UsageError(f"--cluster-cpus must be >= 1, got {self.cpus_per_worker}")
        if not self.segment_seconds > 0:
            raise UsageError(f"--segment-seconds must be > 0, got {self.segment_seconds}")
        if not 0 <= self.warmup_seconds <= 10:
            raise UsageError(f"the warm-up must be 0 to 10 s, got {self.warmup_seconds}")


def parse_cluster(spec: str) -> str | None:
    """``--cluster`` -> Ray address: ``ray`` -> None (start or join a local cluster), ``ray:auto`` ->
    ``auto``, ``ray://host:port`` as is, ``ray:host:port`` -> ``host:port``."""
    if spec == "ray":
        return None
    if spec.startswith("ray://"):
        if len(spec) == len("ray://"):
            raise UsageError("--cluster ray://: give the Ray Client address, e.g. ray://head:10001")
        return spec
    if spec.startswith("ray:") and len(spec) > len("ray:"):
        return spec[len("ray:"):]
    raise UsageError(f"--cluster {spec!r}: use ray, ray:auto, ray:HOST:PORT or ray://HOST:PORT")
