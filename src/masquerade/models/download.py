"""Resumable, verified HTTP downloads (stdlib only).

Bytes go to ``<dest>.part`` next to the destination, are hashed while they stream, and the part file is
renamed onto the destination only when its SHA-256 is one of the accepted values. An interrupted
transfer resumes with an HTTP Range request; each mirror gets a bounded number of attempts.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from masquerade._version import __version__
from masquerade.errors import ChecksumMismatch, ModelError

Progress = Callable[[int, "int | None"], None]
"""Called with (bytes done, total bytes or None) as a download advances."""
Status = Callable[[str], None]
"""Called with a one-line message when a download connects, waits, retries or gives up on a mirror, so a
user on a bad network is never left in silence."""

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """Tries per mirror (the first one included) before moving to the next mirror. After a mirror that
    never answered (every try timed out or was refused), the next mirrors get one try each: the network
    is more likely down than the mirror, and a user should not wait minutes to learn it."""
    backoff_s: float = 1.0
    """Wait before retry n is ``backoff_s * n`` seconds."""
    timeout_s: float = 15.0
    """Socket timeout of one request (connecting, and each read)."""


class _Incomplete(Exception):
    """The server closed the connection before the announced end of the file."""


class _Unreachable(ModelError):
    """No try reached the server (timeouts, refused or reset connections): likely no network."""


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    """SHA-256 (hex) of a file, read in chunks."""
    return _hash_file(path, hashlib.sha256(), progress).hexdigest()


def _hash_file(path: Path, digest: hashlib._Hash, progress: Progress | None = None) -> hashlib._Hash:
    total = path.stat().st_size
    done = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress:
                progress(done, total)
    return digest


def fetch_verified(
    urls: Sequence[str],
    sha256: Sequence[str],
    dest: Path,
    *,
    progress: Progress | None = None,
    expected_size: int | None = None,
    retry: RetryPolicy = RetryPolicy(),
    status: Status | None = None,
) -> str:
    """Download ``dest`` from the first mirror that serves a file with an accepted SHA-256; return it.

    Raises ChecksumMismatch when every mirror that answered served other bytes (the part file is
    deleted), ModelError when none could be reached. ``status`` hears about connecting, retries and
    mirrors given up.
    """
    if not sha256:
        raise ModelError(f"no pinned SHA-256 for {dest.name}; it cannot be downloaded safely")
    accepted = {h.lower() for h in sha256}
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures: list[str] = []
    mismatches: list[str] = []
    for url in urls:
        # A part file left by another mirror or an older run may not be this file's prefix: when a
        # resumed download does not match, it is fetched once more from scratch before giving up.
        for resumed in (part.exists(), False):
            try:
                digest = _download(url, part, progress, expected_size, retry, status)
            except _Unreachable as error:
                failures.append(f"{url}: {error}")
                retry = replace(retry, attempts=1)
                break
            except ModelError as error:
                failures.append(f"{url}: {error}")
                break
            if digest in accepted:
                os.replace(part, dest)
                return digest
            part.unlink(missing_ok=True)
            if not resumed:
                mismatches.append(f"{url} served SHA-256 {digest}")
                break
    if mismatches:
        raise ChecksumMismatch(
            f"{dest.name}: checksum mismatch, the downloaded file was deleted ({'; '.join(mismatches)}; "
            f"expected {' or '.join(sorted(accepted))})"
        )
    if not failures:
        raise ModelError(f"no download address is known for {dest.name}")
    raise ModelError(f"could not download {dest.name}: {'; '.join(failures)}")


def extract_verified(archive: Path, member: str, sha256: Sequence[str], dest: Path) -> str:
    """Extract the zip member whose base name is ``member`` to ``dest`` if its SHA-256 is accepted."""
    part = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    with zipfile.ZipFile(archive) as zf:
        names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == member]
        if not names:
            raise ModelError(f"{archive.name} holds no {member}")
        with zf.open(names[0]) as src, open(part, "wb") as out:
            while chunk := src.read(_CHUNK):
                out.write(chunk)
                digest.update(chunk)
    if digest.hexdigest() not in sha256:
        part.unlink()
        raise ChecksumMismatch(f"{dest.name} from {archive.name} has SHA-256 {digest.hexdigest()}; "
                               "checksum mismatch, the file was deleted")
    os.replace(part, dest)
    return digest.hexdigest()


def _download(
    url: str, part: Path, progress: Progress | None, expected_size: int | None, retry: RetryPolicy,
    status: Status | None = None,
) -> str:
    """Bring ``part`` to the full file from ``url`` (resuming) and return its SHA-256."""
    host = urllib.parse.urlsplit(url).netloc or url
    attempt, answered = 1, False
    while True:
        if status:
            status(f"connecting to {host}" + (f" (try {attempt} of {retry.attempts})" if attempt > 1 else ""))
        before = part.stat().st_size if part.exists() else 0
        try:
            return _attempt(url, part, progress, expected_size, retry.timeout_s)
        except urllib.error.HTTPError as error:
            answered = True
            # A client error will not change on retry (except timeouts and rate limits).
            if error.code < 500 and error.code not in (408, 429):
                raise ModelError(f"HTTP {error.code} {error.reason}") from None
            reason = f"HTTP {error.code} {error.reason}"
        except urllib.error.URLError as error:
            if isinstance(error.reason, socket.gaierror):  # no DNS: offline or a wrong host, not transient
                raise ModelError(f"cannot resolve the host ({error.reason})") from None
            reason = _reason(error.reason, retry.timeout_s)
        except (OSError, http.client.HTTPException, _Incomplete) as error:
            answered = answered or isinstance(error, (_Incomplete, http.client.HTTPException))
            reason = _reason(error, retry.timeout_s)
        answered = answered or (part.exists() and part.stat().st_size > before)  # bytes came: the net works
        if attempt >= retry.attempts:
            message = f"gave up after {attempt} attempt{'s' if attempt > 1 else ''} ({reason})"
            if status:
                status(f"{host}: {message}")
            raise (ModelError if answered else _Unreachable)(message)
        wait = retry.backoff_s * attempt
        if status:
            status(f"{host}: {reason}; trying again in {wait:g} s")
        time.sleep(wait)
        attempt += 1


def _reason(error: object, timeout_s: float) -> str:
    """A short reason for a failed try (a timeout says how long it waited)."""
    if isinstance(error, (TimeoutError, socket.timeout)):
        return f"no answer within {timeout_s:g} s"
    return str(error) or type(error).__name__


def _attempt(
    url: str, part: Path, progress: Progress | None, expected_size: int | None, timeout: float
) -> str:
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    digest = _hash_file(part, hashlib.sha256()) if offset else hashlib.sha256()
    if expected_size is not None and offset == expected_size:
        return digest.hexdigest()
    headers = {"User-Agent": f"masquerade/{__version__}"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return digest.hexdigest()  # nothing past what we have: the part is the whole file
        raise
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored Range: start over
            digest = hashlib.sha256()
        total = _total_size(response, offset)
        done = offset
        if progress:
            progress(done, total)
        with open(part, "ab" if offset else "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
    if total is not None and done < total:
        raise _Incomplete(f"connection closed after {done} of {total} bytes")
    return digest.hexdigest()


def _total_size(response: http.client.HTTPResponse, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if "/" in content_range:
        total = content_range.rsplit("/", 1)[1].strip()
        if total.isdigit():
            return int(total)
    length = response.headers.get("Content-Length")
    if length and length.isdigit():
        return offset + int(length)
    return None
