"""Fixtures for the model cache tests (helpers live in modelkit.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path

import pytest
from modelkit import F32, FileServer, handler, write_onnx


@pytest.fixture
def http_server() -> Iterator[FileServer]:
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler(state))
    state.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def inswapper_standin(tmp_path: Path) -> Path:
    """inswapper_128's real I/O names, shapes and dtypes."""
    return write_onnx(
        tmp_path / "inswapper_standin.onnx",
        [("target", F32, [1, 3, 128, 128]), ("source", F32, [1, 512])],
        [("output", F32, [1, 3, 128, 128])],
    )
