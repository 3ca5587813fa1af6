import errno
import os
import stat
import subprocess
import sys

import pytest
from clips import make_clip

from masquerade.errors import OutputError
from masquerade.media.atomic import atomic_output, remove_stale_temporaries, shown_path, temp_path


def test_renames_on_success_with_normal_permissions(tmp_path):
    target = tmp_path / "out.mp4"
    with atomic_output(target) as temp:
        assert temp.parent == tmp_path and temp.suffix == ".mp4" and temp != target
        temp.write_bytes(b"done")
        assert not target.exists()
    assert target.read_bytes() == b"done"
    assert list(tmp_path.iterdir()) == [target]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_removes_temp_on_any_exception(tmp_path, error):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(error), atomic_output(target) as temp:
        temp.write_bytes(b"half")
        raise error()
    assert target.read_bytes() == b"old"  # the previous file is untouched
    assert list(tmp_path.iterdir()) == [target]


def test_missing_folder(tmp_path):
    with pytest.raises(OutputError, match="does not exist"), atomic_output(tmp_path / "nope" / "out.jpg"):
        pass


def test_target_is_a_folder(tmp_path):
    (tmp_path / "d.jpg").mkdir()
    with pytest.raises(OutputError, match="is a folder"), atomic_output(tmp_path / "d.jpg"):
        pass


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_folder(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="not writable"), atomic_output(folder / "out.jpg"):
            pass
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize("name", ["a" * 211 + ".png", "b" * 251 + ".mp4", "é" * 125 + ".jpg",
                                  "c" * 250 + ".webm"])
def test_the_longest_legal_names_get_legal_temporary_names(tmp_path, name):
    target = tmp_path / name
    assert 215 <= len(name.encode()) <= 255
    with atomic_output(target) as temp:
        assert len(temp.name.encode()) <= 255 and temp.suffix == target.suffix
        nested = temp_path(temp, "c2pa")  # signing writes a temporary copy of the temporary file
        assert len(nested.name.encode()) <= 255 and nested.suffix == target.suffix
        nested.write_bytes(b"signed")
        os.replace(nested, temp)
    assert target.read_bytes() == b"signed"
    if len(name.encode()) < 220:  # not shortened: messages can name the output from the temporary name
        assert shown_path(temp) == target and shown_path(nested) == target


def test_an_image_with_a_255_byte_name_is_swapped_and_labelled(tmp_path, examples_dir):
    from masquerade.api import swap
    from masquerade.verify import verify_file

    output = tmp_path / ("x" * 251 + ".png")
    swap([examples_dir / "astronaut.png"], examples_dir / "obama.jpg", output)
    assert verify_file(output).label.labelled
    assert [p.name for p in tmp_path.iterdir()] == [output.name]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_killed_runs_are_removed_and_nothing_else(tmp_path):
    dead = _dead_pid()
    stale = [tmp_path / f".out.{dead}-0123abcd.partial.mp4", tmp_path / f"..o.{dead}-0123abcd.c2pa.jpg"]
    mine = tmp_path / f".mine.{os.getpid()}-0123abcd.partial.png"  # this process is alive
    # An older naming without pid, and a name that is not hidden: not ours to judge.
    foreign = [tmp_path / ".out.0123abcd.partial.mp4", tmp_path / f"notes.{dead}-0123abcd.partial.txt"]
    for path in [*stale, mine, *foreign]:
        path.write_bytes(b"half")
    with atomic_output(tmp_path / "new.png") as temp:
        temp.write_bytes(b"done")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["new.png", mine.name, *(p.name for p in foreign)])


def test_a_temporary_locked_by_a_live_writer_is_kept(tmp_path):
    """A writer elsewhere (another machine on a network folder, a reused pid) holds the lock."""
    dead = _dead_pid()
    locked = tmp_path / f".out.{dead}-0123abcd.partial.mp4"
    locked.write_bytes(b"being written")
    holder = subprocess.Popen([sys.executable, "-c",
                               "import fcntl, sys, time; f = open(sys.argv[1], 'rb'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(30)",
                               str(locked)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert remove_stale_temporaries(tmp_path) == []
        assert locked.exists()
    finally:
        holder.kill()
        holder.wait()
    assert remove_stale_temporaries(tmp_path) == [locked]


def test_disk_full_while_writing_an_image_is_one_line_and_leaves_nothing(tmp_path, obama, monkeypatch):
    from masquerade.media.image import write_image

    def full(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(type(tmp_path), "write_bytes", full)
    with pytest.raises(OutputError, match=r"cannot write .*out\.png: the disk is full"):
        write_image(tmp_path / "out.png", obama)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture
def small_disk(tmp_path):
    """A 400 kB tmpfs (root only; skipped elsewhere)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)


@pytest.mark.parametrize("output", ["out.png", "out.mp4", "out.jpg"])
def test_a_real_full_disk_says_so(small_disk, examples_dir, output, capsys):
    from masquerade.cli.main import main

    target = examples_dir / "obama.jpg"
    if output == "out.jpg":  # fits once (311 kB), not twice: the disk fills up while signing
        (small_disk / "ballast").write_bytes(b"\0" * 60_000)
    elif output == "out.mp4":  # a small clip, and room for a few kB of it
        target = small_disk.parent / "clip.mp4"
        make_clip(target, frames=25, size=(320, 240))
        (small_disk / "ballast").write_bytes(b"\0" * (400 * 1024 - 8192))
    code = main(["swap", "-q", "-s", str(examples_dir / "astronaut.png"), "-t", str(target),
                 "-o", str(small_disk / output)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1, err
    assert f"{small_disk / output}: the disk is full" in err and "key" not in err
    assert sorted(p.name for p in small_disk.iterdir()) in ([], ["ballast"])
