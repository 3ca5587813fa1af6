"""Loading the embedded .tflite models with ai-edge-litert."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_LOAD_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """LiteRT's C++ core prints "INFO: Created TensorFlow Lite XNNPACK delegate" to fd 2 with no
    switch to turn it off; hide fd 2 for the few milliseconds a model takes to load."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # no real stderr (e.g. captured): nothing to hide
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


def load_interpreter(model_path: Path, threads: int | None = None) -> Any:
    """A ready (tensors allocated) LiteRT interpreter for ``model_path``."""
    from ai_edge_litert.interpreter import Interpreter  # heavy import, only when a model is built

    with _LOAD_LOCK, _native_stderr_silenced():
        interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        interpreter.allocate_tensors()
    return interpreter
