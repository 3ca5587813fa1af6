"""The run's workers: Ray actors asking for the resources they use, each loading the models once."""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any

from masquerade._version import __version__
from masquerade.api import Identities, SourcePhotos
from masquerade.cluster.options import ClusterOptions
from masquerade.cluster.worker import Shipped, SwapWorker, WorkerInfo
from masquerade.config import RunConfig
from masquerade.errors import ClusterError, MasqueradeError, UsageError

MAX_RESTARTS = 4
"""Times Ray brings back a worker whose process died (then the run fails, naming it)."""
TASK_RETRIES = 2
"""Times a task that was running on a worker that died is run again."""
CLOSE_SECONDS = 5.0
"""How long the end of a run waits for the workers to tidy up before stopping them."""


class WorkerPool:
    """The run's worker actors, their models loaded and the run's identities decided (by one of them,
    for all); ``submit`` hands a task to the least busy one."""

    def __init__(self, ray: ModuleType, config: RunConfig, photos: SourcePhotos, options: ClusterOptions,
                 tasks: int) -> None:
        self.ray = ray
        gpus = 1 if config.runtime.execution_provider == "torch-cuda" else 0
        cpus = options.cpus_per_worker
        _check_fits(ray, cpus, gpus)
        count = min(options.workers or _fitting_workers(ray, cpus, gpus), max(tasks, 1))
        remote = ray.remote(_RayWorker).options(
            num_cpus=cpus, num_gpus=gpus, max_restarts=MAX_RESTARTS, max_task_retries=TASK_RETRIES)
        self.actors = [remote.remote(config, cpus) for _ in range(count)]
        self.load = [0] * count
        self._owner: dict[Any, int] = {}
        try:
            self.infos: list[WorkerInfo] = self.get_all([actor.info.remote() for actor in self.actors])
            for info in self.infos:
                if info.version != __version__:
                    raise ClusterError(f"the worker on {info.host} runs masquerade {info.version}, this "
                                       f"machine {__version__}: install the same version on every node")
            # The photos go to the object store; every worker (and a restarted one) reads them from
            # there, with the identities one worker decided, so no worker decides them alone.
            self._ship((photos, None))
            decided: tuple[Identities, tuple[str, ...]] = self.call("identities")
            self.identities, self.warnings = decided
            self._ship((photos, self.identities))
        except BaseException:
            self.shutdown()
            raise

    def _ship(self, shipped: Shipped) -> None:
        # Named in a list, so Ray hands the reference over as it is; the driver keeps it alive.
        self._shipped = [self.ray.put(shipped)]

    def submit(self, method: str, *args: Any) -> Any:
        index = min(range(len(self.actors)), key=lambda i: self.load[i])
        ref = getattr(self.actors[index], method).remote(self._shipped, *args)
        self.load[index] += 1
        self._owner[ref] = index
        return ref

    def release(self, ref: Any) -> None:
        self.load[self._owner.pop(ref)] -= 1

    def call(self, method: str, *args: Any) -> Any:
        ref = self.submit(method, *args)
        try:
            return self.get(ref)
        finally:
            self.release(ref)

    def get(self, ref: Any) -> Any:
        return self.get_all([ref])[0]

    def get_all(self, refs: list[Any]) -> list[Any]:
        """``ray.get``, with a worker's own error (refused content, a bad file) raised as itself."""
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(refs)
        except exceptions.RayTaskError as exc:
            cause = exc.cause
            if isinstance(cause, MasqueradeError):
                raise cause from None
            raise ClusterError(f"a worker failed: {type(cause).__name__}: {cause}") from None
        except exceptions.RayActorError as exc:
            raise ClusterError(f"a worker died {MAX_RESTARTS + 1} times or could not start; the finished "
                               f"segments are kept, run again to go on ({type(exc).__name__})") from None

    def shutdown(self) -> None:
        """Workers remove their temporary folders, then are stopped."""
        closing = [actor.close.remote() for actor in self.actors]
        with contextlib.suppress(Exception):
            self.ray.wait(closing, num_returns=len(closing), timeout=CLOSE_SECONDS)
        for actor in self.actors:
            self.ray.kill(actor)


class _RayWorker(SwapWorker):
    """``SwapWorker`` as a Ray actor. Tasks name the photos by an object reference in a list (so Ray
    hands it over as is): they are fetched from the object store only when a worker prepares its
    job, and not kept by Ray per worker for restarts."""

    def _unship(self, shipped: Any) -> Shipped:
        import ray

        return ray.get(shipped[0])


def _fitting_workers(ray: ModuleType, cpus: int, gpus: int) -> int:
    resources = ray.cluster_resources()
    count = int(resources.get("CPU", 0) // cpus)
    if gpus:
        count = min(count, int(resources.get("GPU", 0)))
    return max(count, 1)


def _check_fits(ray: ModuleType, cpus: int, gpus: int) -> None:
    """A worker asking for more than any node has would wait forever: say so instead."""
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= gpus for n in nodes):
        most = max((int(n.get("CPU", 0)) for n in nodes), default=0)
        gpu_note = f" and {gpus} GPU" if gpus else ""
        raise UsageError(f"no node of the cluster has {cpus} CPUs{gpu_note} for a worker (the largest has "
                         f"{most} CPUs, {int(max((n.get('GPU', 0) for n in nodes), default=0))} GPUs); "
                         "lower --cluster-cpus")
