"""Multipart uploads streamed straight into the data dir, under a server-chosen name, size-checked as
they arrive (a request over the limit is cut off with 413 without being stored)."""

from __future__ import annotations

import contextlib
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from masquerade.studio.datadir import DataDir, new_id

FIELD = "file"
MAX_NAME = 120


class UploadError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Upload:
    path: Path
    """Where the bytes are, in the data dir (``tmp/<random id>.part``)."""
    name: str
    """The client's file name, cleaned for display; never used as a path."""
    size: int


def display_name(raw: str) -> str:
    """The last component of a client-given name, without control characters (NUL included), short."""
    name = PurePosixPath(raw.replace("\\", "/")).name
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip().lstrip(".")
    return name[-MAX_NAME:] or "upload"


async def receive(request: Request, data: DataDir, limit: int) -> Upload:
    """Read the multipart field ``file`` of ``request`` into the data dir's tmp folder."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise UploadError(415, "send the file as multipart/form-data in a field named 'file'")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise UploadError(413, _too_large(limit))
    state = _State(data.tmp / f"{new_id()}.part", limit)
    parser = MultipartParser(boundary, state.callbacks(), max_size=limit + 64 * 1024)
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            if state.error:
                raise state.error
        parser.finalize()
        if state.error:
            raise state.error
    except UploadError:
        state.discard()
        raise
    except Exception as exc:  # malformed multipart or a dropped connection
        state.discard()
        raise UploadError(400, f"the upload could not be read ({type(exc).__name__})") from None
    state.close()
    if not state.found:
        state.discard()
        raise UploadError(400, "the form has no file in a field named 'file'")
    if state.size == 0:
        state.discard()
        raise UploadError(400, f"{state.name} is empty")
    return Upload(state.path, state.name, state.size)


def _too_large(limit: int) -> str:
    return f"the file is larger than the upload limit of {limit / 2**20:g} MB (--max-upload-mb)"


class _State:
    """Callbacks of the streaming parser: headers of each part, the ``file`` part's bytes to disk."""

    def __init__(self, path: Path, limit: int) -> None:
        self.path, self.limit = path, limit
        self.handle: IO[bytes] | None = None
        self.header_field, self.header_value = b"", b""
        self.headers: dict[bytes, bytes] = {}
        self.found, self.writing, self.size, self.name = False, False, 0, "upload"
        self.error: UploadError | None = None

    def callbacks(self) -> dict:
        return {"on_part_begin": self.part_begin, "on_header_field": self.field,
            "on_header_value": self.value,
                "on_header_end": self.header_end, "on_headers_finished": self.headers_done,
                "on_part_data": self.part_data, "on_part_end": self.part_end}

    def part_begin(self) -> None:
        self.headers, self.header_field, self.header_value = {}, b"", b""

    def field(self, data: bytes, start: int, end: int) -> None:
        self.header_field += data[start:end]

    def value(self, data: bytes, start: int, end: int) -> None:
        self.header_value += data[start:end]

    def header_end(self) -> None:
        self.headers[self.header_field.strip().lower()] = self.header_value.strip()
        self.header_field, self.header_value = b"", b""

    def headers_done(self) -> None:
        _, params = parse_options_header(self.headers.get(b"content-disposition", b""))
        if params.get(b"name") == FIELD.encode() and not self.found:
            self.found, self.writing = True, True
            self.name = display_name(params.get(b"filename", b"").decode("utf-8", "replace"))
            self.handle = open(self.path, "xb")  # noqa: SIM115 (closed in part_end / close / discard)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if not self.writing or self.error or self.handle is None:
            return
        self.size += end - start
        if self.size > self.limit:
            self.error = UploadError(413, _too_large(self.limit))
            return
        self.handle.write(data[start:end])

    def part_end(self) -> None:
        self.writing = False

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def discard(self) -> None:
        self.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
