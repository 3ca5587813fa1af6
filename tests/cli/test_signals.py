"""A run ends cleanly on Ctrl-C, SIGTERM and SIGHUP, and says truthfully what became of the output."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import masquerade.cli.swap_cmd as swap_cmd
from masquerade.cli.main import main

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "media"))
    from clips import make_clip

    path = tmp_path_factory.mktemp("signals") / "in.mp4"
    make_clip(path, frames=400, size=(320, 240))
    return path


@posix_only
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_terminating_signals_leave_no_partial_file(tmp_path, long_clip, examples_dir, signum):
    output = tmp_path / "out.mp4"
    run = subprocess.Popen(
        [sys.executable, "-m", "masquerade", "swap", "-q", "-s", str(examples_dir / "astronaut.png"),
         "-t", str(long_clip), "-o", str(output)],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    deadline = time.monotonic() + 120
    while not any(p.name.endswith(".partial.mp4") for p in tmp_path.iterdir()):  # encoding has begun
        assert run.poll() is None, run.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    run.send_signal(signum)
    err = run.communicate(timeout=60)[1]
    assert run.returncode == 128 + signum
    assert err.strip() == f"masquerade: stopped by {signal.Signals(signum).name}; no output was written"
    assert list(tmp_path.iterdir()) == []


def _fake_swap(write: bool):
    def swap(sources, target, output, config, hooks):
        if write:
            Path(output).write_bytes(b"complete")  # the rename happened, then the interrupt came
        raise KeyboardInterrupt

    return swap


@pytest.mark.parametrize(("existed", "written", "message"), [
    (False, True, "cancelled after {out} was written: it is complete"),
    (True, True, "cancelled after {out} was written: it is complete"),
    (False, False, "cancelled; no output was written\n"),
    (True, False, "cancelled; no output was written ({out} is as it was)"),
])
def test_an_interrupt_says_whether_the_output_was_written(tmp_path, examples_dir, monkeypatch, capsys,
                                                          existed, written, message):
    output = tmp_path / "out.jpg"
    if existed:
        output.write_bytes(b"an older result")
        old = output.stat().st_mtime_ns
        while time.time_ns() <= old:
            time.sleep(0.001)
    monkeypatch.setattr(swap_cmd, "swap", _fake_swap(written))
    code = main(["swap", "-s", str(examples_dir / "obama.jpg"), "-t", str(examples_dir / "biden.jpg"),
                 "-o", str(output)])
    assert code == 130
    assert message.format(out=output) in capsys.readouterr().err
