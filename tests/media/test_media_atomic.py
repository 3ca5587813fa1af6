import os
import stat

import pytest

from masquerade.errors import OutputError
from masquerade.media.atomic import atomic_output


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
