"""``masquerade serve``: uvicorn for the app, a pool of worker processes for the jobs."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

from masquerade.errors import UsageError
from masquerade.studio.datadir import DataDir
from masquerade.studio.settings import StudioSettings
from masquerade.studio.store import JobStore

STOP_GRACE_S = 10.0
"""How long a worker may take to abandon its job and exit before it is killed."""


class WorkerPool:
    """``n`` worker processes; one that dies is replaced and its job re-queued."""

    def __init__(self, n: int, data: DataDir, store: JobStore,
                 server_stopping: Callable[[], bool] = lambda: False) -> None:
        self.n, self.data, self.store = n, data, store
        self.server_stopping = server_stopping
        """True once the server is shutting down (Ctrl-C reaches the workers too: no respawn then)."""
        self.processes: dict[int, subprocess.Popen] = {}
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="studio-workers", daemon=True)

    def start(self) -> None:
        for number in range(self.n):
            self._spawn(number)
        self._monitor.start()

    def _spawn(self, number: int) -> None:
        # TMPDIR: the libraries' own temporary files (C2PA signing spills big videos to disk) stay
        # in the data dir too.
        self.processes[number] = subprocess.Popen(
            [sys.executable, "-m", "masquerade.studio.worker", str(self.data.root), str(number),
             str(os.getpid())],
            stdin=subprocess.DEVNULL, env={**os.environ, "TMPDIR": str(self.data.tmp)})

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for number, process in list(self.processes.items()):
                if process.poll() is not None and not self._stopping.is_set() and not self.server_stopping():
                    print(f"masquerade: studio worker {number} stopped (exit {process.returncode}); "
                          "its job is queued again", file=sys.stderr)
                    self.store.requeue_running(worker=number)
                    self._spawn(number)

    def stop(self) -> None:
        self._stopping.set()
        for process in self.processes.values():
            if process.poll() is None:
                with contextlib.suppress(OSError):
                    process.terminate()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in self.processes.values():
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.store.requeue_running(graceful=True)


def listen(host: str, port: int) -> socket.socket:
    """Bind now, so a busy port is a one-line error and ``--port 0`` learns its port before serving."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    sock.set_inheritable(False)
    return sock


def serve(settings: StudioSettings, on_ready: Callable[[str], None] | None = None) -> None:
    """Run the studio until Ctrl-C / SIGTERM; a job that was running is queued again, not lost."""
    import uvicorn

    from masquerade.studio.app import create_app

    data = DataDir(settings.data_dir)
    data.create()
    data.lock()
    store = JobStore(data.db)
    store.initialise()
    store.requeue_running()  # a server killed mid-job left it "running": run it again
    data.clean_tmp()
    # This process's temporary files (Python's and the native libraries') stay in the data dir too.
    os.environ["TMPDIR"] = tempfile.tempdir = str(data.tmp)
    sock = listen(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    app = create_app(settings, data, store)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2,
                                           access_log=False, server_header=False))
    pool = WorkerPool(settings.workers, data, store, server_stopping=lambda: server.should_exit)
    pool.start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then raises the signal again for the handler that
    # was there before it: ours, which ends the run here so the workers are stopped and jobs re-queued.
    previous = {sig: signal.signal(sig, _stopped) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_ready is not None:
            threading.Timer(0.2, on_ready, args=(f"http://{shown}:{port}/",)).start()
        server.run(sockets=[sock])
    except _Stopped:
        pass
    finally:
        pool.stop()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Stopped(Exception):
    """SIGINT or SIGTERM after uvicorn's graceful shutdown."""


def _stopped(signum: int, frame: object) -> None:
    raise _Stopped(signum)
