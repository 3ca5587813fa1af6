"""Atomic output files: write beside the target under a temporary name, rename when complete."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from masquerade.errors import OutputError


def check_output_folder(path: Path) -> None:
    """Raise ``OutputError`` unless ``path`` could be created: its folder exists and is writable."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise OutputError(f"output {path} is a folder, not a file name")
    if not folder.exists():
        raise OutputError(f"output folder {folder} does not exist")
    if not folder.is_dir():
        raise OutputError(f"output folder {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"output folder {folder} is not writable")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the target's extension, so muxers and encoders that pick a format
    from the file name see the right one. On any exception, ``KeyboardInterrupt`` included, the
    temporary file is deleted and the exception propagates: a reader never sees a half-written file.
    """
    path = Path(path)
    check_output_folder(path)
    temp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
    try:
        # O_EXCL: never clobber another writer's temp file; 0o666 lets the umask decide permissions
        # (mkstemp's 0o600 would leak into the final file).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise OutputError(f"cannot write to {path.parent}: {exc.strerror}") from exc
    os.close(fd)
    try:
        yield temp
        try:
            os.replace(temp, path)
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from exc
    except BaseException:
        _unlink_quietly(temp)
        raise
