"""The data dir: the one folder the studio reads and writes (uploads, outputs, the job database)."""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO

from masquerade.errors import UsageError

ID_BYTES = 18
"""Ids are 144 random bits (24 URL-safe characters): unguessable, so knowing one id reveals no other."""
ID_LENGTH = 24


def new_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def is_id(value: str) -> bool:
    return len(value) == ID_LENGTH and all(c.isascii() and (c.isalnum() or c in "-_") for c in value)


class DataDir:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uploads = self.root / "uploads"
        self.outputs = self.root / "outputs"
        self.tmp = self.root / "tmp"
        self.db = self.root / "studio.db"
        self._lock: IO[bytes] | None = None

    def create(self) -> None:
        try:
            for folder in (self.root, self.uploads, self.outputs, self.tmp):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the data dir {self.root}: {exc.strerror}") from exc

    def lock(self) -> None:
        """Hold an exclusive lock on the data dir for this process's life: two servers sharing one
        job database would run each other's jobs."""
        handle = open(self.root / "studio.lock", "ab")  # noqa: SIM115 (held until the process exits)
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; one server per data dir is up to the user
            self._lock = handle
            return
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise UsageError(f"another masquerade serve is using {self.root}; stop it or give "
                             "another --data-dir") from None
        self._lock = handle

    def clean_tmp(self) -> None:
        """Remove what a killed server left behind: temporary uploads and half-written outputs."""
        for path in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                path.unlink()
        for folder in (self.uploads, self.outputs):
            for path in folder.iterdir():
                if path.name.startswith(".") or path.suffix == ".part":
                    with contextlib.suppress(OSError):
                        path.unlink()

    def inside(self, relative: str) -> Path:
        """The absolute path of a stored relative path; refuses anything that leaves the data dir."""
        path = (self.root / relative).resolve()
        if self.root not in path.parents:
            raise ValueError(f"stored path {relative!r} is outside the data dir")
        return path

    def relative(self, path: Path) -> str:
        return Path(path).resolve().relative_to(self.root).as_posix()

    def temp_path(self, suffix: str = "") -> Path:
        return self.tmp / f"{new_id()}{suffix}"

    def hide(self, message: str) -> str:
        """A message without the data dir's absolute path in it (clients never see server paths)."""
        return message.replace(str(self.root) + os.sep, "").replace(str(self.root), "data dir")
