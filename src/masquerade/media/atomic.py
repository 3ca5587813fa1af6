"""Atomic output files: write beside the target under a temporary name, rename when complete.

Temporary names are ``.<stem>.<pid>-<random>.<tag><suffix>`` (tag ``partial`` for an output being
written, ``c2pa`` for one being signed), cut to fit the file system's name limit. The writer holds an
advisory lock on its temporary file. A run that is killed outright (SIGKILL, power loss) cannot remove
its own; the next run into the same folder removes those whose process is gone and whose lock is free,
and nothing else.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

from masquerade.errors import OutputError

TEMP_TAGS = ("partial", "c2pa")
_TEMP_NAME = re.compile(r"^\..*\.(?P<pid>\d+)-[0-9a-f]{8}\.(?:partial|c2pa)(?P<suffix>\.[^.]*)?$")
_NAME_MAX = 255
"""Bytes in a file name on Linux, macOS and Windows file systems (used when the folder cannot say)."""
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


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


def shown_path(path: Path) -> Path:
    """The output a temporary file stands for (for messages: users never chose the temporary name)."""
    path = Path(path)
    while (match := _TEMP_NAME.match(path.name)) is not None:
        path = path.with_name(path.name[1 : match.start("pid") - 1] + (match["suffix"] or ""))
    return path


def write_error(path: Path, exc: OSError, what: str = "write") -> OutputError:
    """A one-line ``OutputError`` for an OSError met while writing ``path``; a full disk says so."""
    path = shown_path(path)
    if exc.errno in _DISK_FULL:
        reason = "the disk is full" if exc.errno != errno.EDQUOT else "the disk quota is used up"
        if exc.errno == errno.EFBIG:
            reason = "the file is larger than this file system or process allows"
        return OutputError(f"cannot {what} {path}: {reason} ({exc.strerror}); free some space and run again")
    return OutputError(f"cannot {what} {path}: {exc.strerror or exc}")


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return _NAME_MAX


def temp_path(path: Path, tag: str = "partial") -> Path:
    """A new temporary name beside ``path`` that keeps its extension and fits the name limit.

    The stem is shortened (on a character boundary) when the name would be too long, so any legal
    output name, even one of 255 bytes, gets a legal temporary name. A temporary name of a temporary
    file (signing makes a signed copy of the unsigned output) is made from the output's name, not nested.
    """
    if tag not in TEMP_TAGS:
        raise ValueError(f"tag must be one of {TEMP_TAGS}, got {tag!r}")
    path = shown_path(path)
    tail = f".{os.getpid()}-{secrets.token_hex(4)}.{tag}{path.suffix}"
    room = min(_name_max(path.parent), _NAME_MAX) - 1 - len(tail.encode())
    stem = path.stem.encode()[: max(room, 0)].decode(errors="ignore")
    return path.with_name(f".{stem}{tail}")


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _lock(fd: int) -> None:
    """Hold an advisory lock on our temporary file while it is ours (released when the fd closes,
    also when the process dies)."""
    if sys.platform != "win32":
        import fcntl

        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (someone else's counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return True
    return True


def _stale(path: Path) -> bool:
    """Ours (by name), its process gone from this machine, and nobody holding its lock."""
    import fcntl

    match = _TEMP_NAME.match(path.name)
    if match is None or int(match["pid"]) == os.getpid() or process_alive(int(match["pid"])):
        return False
    try:
        info = path.lstat()
        if not stat.S_ISREG(info.st_mode):
            return False
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # another machine's writer (network folder) holds it
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Delete masquerade's temporary files in ``folder`` left by runs that were killed; return them.

    Only names of masquerade's own pattern whose process is gone and whose lock is free are touched.
    Best effort: anything that cannot be checked or removed is left alone. Not on Windows, where a
    process cannot be probed without side effects.
    """
    if sys.platform == "win32":
        return []
    removed: list[Path] = []
    try:
        candidates = [entry for entry in os.scandir(folder) if _TEMP_NAME.match(entry.name)]
    except OSError:
        return removed
    for entry in candidates:
        path = Path(entry.path)
        if _stale(path):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name keeps the target's extension, so muxers and encoders that pick a format
    from the file name see the right one. On any exception, ``KeyboardInterrupt`` included, the
    temporary file is deleted and the exception propagates: a reader never sees a half-written file.
    Temporary files of earlier runs that were killed are removed first (see
    :func:`remove_stale_temporaries`).
    """
    path = Path(path)
    check_output_folder(path)
    remove_stale_temporaries(path.parent)
    temp = temp_path(path)
    try:
        # O_EXCL: never clobber another writer's temp file; 0o666 lets the umask decide permissions
        # (mkstemp's 0o600 would leak into the final file).
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise write_error(path.parent, exc, "write to") from exc
    _lock(fd)
    try:
        yield temp
        try:
            os.replace(temp, path)
        except OSError as exc:
            raise write_error(path, exc) from exc
    except BaseException:
        _unlink_quietly(temp)
        raise
    finally:
        os.close(fd)
