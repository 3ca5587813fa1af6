"""What a cluster run needs beyond a single machine's ``RunConfig``: where the cluster is, how many
workers and what each asks for, how videos are split, and where finished segments are kept."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from masquerade.config import OptionProblem, Problems
from masquerade.errors import UsageError
from masquerade.split import SEGMENT_SECONDS, WARMUP_SECONDS

MAX_CPUS_PER_WORKER = 256
MAX_WARMUP_SECONDS = 10.0


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


def cluster_problems(options: ClusterOptions) -> list[OptionProblem]:
    """Every cluster option out of range (the cluster's counterpart of ``config.config_problems``)."""
    problems = Problems()
    problems.whole("--cluster-workers", options.workers, 1)
    problems.whole("--cluster-cpus", options.cpus_per_worker, 1, MAX_CPUS_PER_WORKER)
    problems.number("--segment-seconds", options.segment_seconds, 0.1, math.inf, "at least 0.1 s")
    problems.number("warmup_seconds", options.warmup_seconds, 0.0, MAX_WARMUP_SECONDS)
    return problems.found


def validate_cluster(options: ClusterOptions) -> None:
    """Raise ``UsageError`` naming every invalid cluster option."""
    problems = cluster_problems(options)
    if problems:
        raise UsageError("; ".join(p.message for p in problems))


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
