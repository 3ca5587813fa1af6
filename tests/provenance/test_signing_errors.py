"""Signing under pressure: an interrupt mid-signature, a full disk, a damaged key, loose permissions."""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from masquerade.errors import OutputError
from masquerade.provenance import EditSummary, c2pa_label, keys, label_file, read_label
from masquerade.provenance.c2pa_label import label_identity

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals and permission bits")


def _image(folder: Path, obama: np.ndarray) -> Path:
    path = folder / "out.jpg"
    cv2.imwrite(str(path), obama)
    return path


@posix_only
def test_ctrl_c_while_signing_is_not_swallowed(home, tmp_path, obama, monkeypatch, request):
    """c2pa calls back into Python for every read and write and swallows what its callbacks raise: an
    interrupt must still stop the signing, leave the file as it was, and reach the caller."""
    path = _image(tmp_path, obama)
    before = path.read_bytes()
    label_identity(path)  # the key exists before the interrupt
    # Ctrl-C as a terminal delivers it, whatever handler the test process inherited (a shell's background
    # job starts with SIGINT ignored; a library may have installed its own).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, previous))
    real_write = c2pa_label._WatchedFile.write
    sent = []

    def write(self, data):
        if not sent:
            sent.append(True)
            signal.raise_signal(signal.SIGINT)  # Ctrl-C, delivered to the main thread
        return real_write(self, data)

    monkeypatch.setattr(c2pa_label._WatchedFile, "write", write)
    with pytest.raises(KeyboardInterrupt):
        label_file(path, kind="image", edit=EditSummary(faces_replaced=1))
    assert sent and path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out.jpg"]  # no signed copy left behind


def test_disk_full_while_signing_says_disk_full_not_key(home, tmp_path, obama, monkeypatch):
    path = _image(tmp_path, obama)
    real_write = c2pa_label._WatchedFile.write

    def write(self, data):
        if len(data) > 1000:
            self.error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise self.error
        return real_write(self, data)

    monkeypatch.setattr(c2pa_label._WatchedFile, "write", write)
    with pytest.raises(OutputError) as error:
        label_file(path, kind="image", edit=EditSummary(faces_replaced=1))
    message = str(error.value)
    assert "the disk is full" in message and "key" not in message and "c2pa-signer" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "out.jpg"]


def test_a_damaged_key_says_how_to_recover(home):
    folder = home / "keys"
    folder.mkdir(parents=True)
    (folder / keys.KEY_FILE_NAME).write_bytes(b"-----BEGIN PRIVATE KEY-----\ngarbage\n")
    with pytest.raises(OutputError, match=r"is damaged .*delete that file and the next run makes a new key"):
        keys.signing_identity()
    (folder / keys.KEY_FILE_NAME).unlink()
    assert keys.signing_identity().alg == "es256"  # the advice works


@posix_only
def test_an_existing_keys_folder_is_tightened_to_0700(home):
    keys.signing_identity()
    folder = home / "keys"
    folder.chmod(0o755)
    keys.signing_identity()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    folder.chmod(0o755)
    (folder / keys.KEY_FILE_NAME).unlink()  # a new key in an old, loose folder
    keys.signing_identity()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_damaged_key_stops_a_video_before_its_first_frame(home, tmp_path, make_video):
    from masquerade.config import EncodeOptions
    from masquerade.media.reader import VideoReader
    from masquerade.media.writer import VideoWriter

    (home / "keys").mkdir(parents=True)
    (home / "keys" / keys.KEY_FILE_NAME).write_bytes(b"not a key")
    clip = make_video(tmp_path / "in.mp4", [np.full((64, 64, 3), 90, np.uint8)] * 4)
    with VideoReader(clip) as reader, pytest.raises(OutputError, match="delete that file"):
        VideoWriter(tmp_path / "out.mp4", reader, EncodeOptions())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "in.mp4"]


def test_a_damaged_key_stops_a_swap_before_any_model_is_loaded(home, tmp_path, examples_dir, monkeypatch):
    import masquerade.api as api

    (home / "keys").mkdir(parents=True)
    (home / "keys" / keys.KEY_FILE_NAME).write_bytes(b"not a key")
    monkeypatch.setattr(api, "Pipeline", lambda *a, **k: pytest.fail("the work started"))
    with pytest.raises(OutputError, match="delete that file"):
        api.swap([examples_dir / "obama.jpg"], examples_dir / "sample.mp4", tmp_path / "out.mp4")
    assert read_label(examples_dir / "obama.jpg").kind is None  # reading labels still works
