"""Connecting to Ray: the one place that imports it, so the CPU install runs without it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Iterator
from types import ModuleType

from masquerade.errors import UsageError

EXTRA_HINT = "pip install 'masquerade[cluster]'"


def require_ray() -> ModuleType:
    """The ``ray`` module; ``UsageError`` naming the extra when it is not installed."""
    try:
        import ray
    except ImportError:
        raise UsageError(f"--cluster needs Ray, which is not installed: {EXTRA_HINT}") from None
    return ray


@contextlib.contextmanager
def connected(address: str | None) -> Iterator[ModuleType]:
    """Ray, initialised for this run (see ``ClusterOptions.address``); disconnected afterwards, and a
    local cluster this run started is stopped. A caller that initialised Ray itself keeps it as is."""
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        with _signal_handlers_kept():
            if address is not None and address.startswith("ray://"):
                ray.init(address=address)  # Ray Client passes other arguments on to the remote driver
            else:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                         include_dashboard=False)
    except ConnectionError as exc:
        where = "a running local cluster" if address == "auto" else address or "a local cluster"
        raise UsageError(f"cannot reach {where} with Ray: {exc}") from None
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """``ray.init`` installs its own SIGTERM handler (exit at once, and it stays after ``shutdown``): the
    caller's comes back, so SIGTERM ends a cluster run as it ends a run on one machine (the CLI turns
    it into an interrupt: the workers are stopped and the finished segments kept)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = [getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)]
    previous = {signum: signal.getsignal(signum) for signum in signals}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if handler is not None:
                signal.signal(signum, handler)
