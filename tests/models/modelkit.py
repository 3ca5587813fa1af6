"""Helpers for the model cache tests: a local HTTP file server with Range support, tiny ONNX files."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from onnx import TensorProto, helper

from masquerade.models.download import RetryPolicy

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=5.0)


@dataclass
class FileServer:
    """Serves ``files`` at ``/<name>``; misbehaves on request as the tests direct."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut_after: dict[str, list[int]] = field(default_factory=dict)
    """Per file: byte counts after which successive responses drop the connection (one per request)."""
    fail_status: dict[str, list[int]] = field(default_factory=dict)
    """Per file: HTTP statuses answered to successive requests before serving normally."""
    ignore_range: set[str] = field(default_factory=set)
    redirects: dict[str, str] = field(default_factory=dict)
    """Per name: another name this one answers with a 302 to (as GitHub release assets do)."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) of every request, in order."""

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


def handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/")
            server.requests.append((self.path, self.headers.get("Range")))
            if name in server.redirects:
                self.send_response(302)
                self.send_header("Location", server.url(server.redirects[name]))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            statuses = server.fail_status.get(name)
            if statuses:
                self.send_error(statuses.pop(0))
                return
            if name not in server.files:
                self.send_error(404)
                return
            data = server.files[name]
            start = 0
            header = self.headers.get("Range")
            if header and name not in server.ignore_range:
                start = int(header.removeprefix("bytes=").split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            cuts = server.cut_after.get(name)
            if cuts:
                # Announce the whole body, send part of it, then drop the connection.
                self.wfile.write(body[: cuts.pop(0)])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_onnx(path: Path, inputs: list[tuple[str, int, list]], outputs: list[tuple[str, int, list]]) -> Path:
    """A valid ONNX file with the given graph inputs/outputs: each output is Identity of input 0
    (outputs' shapes are declared, not inferred, which is all a contract check reads)."""
    nodes = [helper.make_node("Identity", [inputs[0][0]], [name]) for name, _, _ in outputs]
    graph = helper.make_graph(
        nodes,
        "standin",
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


F32 = TensorProto.FLOAT


