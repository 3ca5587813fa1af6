"""What ``masquerade serve`` was asked for, checked once."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from masquerade.errors import UsageError

DEFAULT_PORT = 8765
DEFAULT_MAX_UPLOAD_MB = 2048
MAX_WORKERS = 16


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def default_data_dir() -> Path:
    """``studio`` in masquerade's per-user data folder (``MASQUERADE_HOME`` when set)."""
    from masquerade.provenance.keys import masquerade_home

    return masquerade_home() / "studio"


@dataclass(frozen=True)
class StudioSettings:
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = None
    """When set, every ``/api`` call needs ``Authorization: Bearer TOKEN`` (or the page's session cookie)."""
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 2**20
    workers: int = 1

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.token:
            raise UsageError(f"--host {self.host} is reachable from other machines: give --token TOKEN "
                             "so that only people with the token can use the studio")
        if self.token is not None and (len(self.token) < 8 or not self.token.isprintable()
                                       or " " in self.token):
            raise UsageError("--token must be at least 8 printable characters without spaces")
        if not 0 <= self.port <= 65535:
            raise UsageError(f"--port must be between 0 and 65535, got {self.port}")
        if self.max_upload_bytes <= 0:
            raise UsageError("--max-upload-mb must be positive")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise UsageError(f"--workers must be between 1 and {MAX_WORKERS}, got {self.workers}")
