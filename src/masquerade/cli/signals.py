"""Terminating signals end a CLI run the way Ctrl-C does, and the user is told what became of the output."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

TERMINATING_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
"""Signals that end a run the way Ctrl-C does (SIGINT already raises KeyboardInterrupt)."""


class Terminated(KeyboardInterrupt):
    """A terminating signal, raised where Ctrl-C would be so that the same clean-up runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def terminating_signals_interrupt() -> Iterator[None]:
    """While the CLI runs, SIGTERM and SIGHUP raise ``Terminated`` (a ``KeyboardInterrupt``) in the main
    thread: temporary outputs are removed and nothing half-made is left, as on Ctrl-C. The previous
    handlers come back afterwards (the CLI can be called in-process, e.g. by tests)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _raise_terminated) for signum in TERMINATING_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def signal_of(interrupt: BaseException) -> int | None:
    """The signal behind a KeyboardInterrupt (None for Ctrl-C)."""
    return getattr(interrupt, "signum", None)


def interrupted_text(signum: int | None) -> str:
    """``cancelled`` for Ctrl-C, ``stopped by SIGTERM`` for a signal."""
    return "cancelled" if signum is None else f"stopped by {signal.Signals(signum).name}"
