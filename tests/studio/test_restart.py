"""Jobs survive: SIGKILL the server mid-job, start it again; Ctrl-C re-queues the running job."""

from __future__ import annotations

import signal
import sqlite3
import time

from studiokit import ServerProcess, alive, make_media, worker_pids


def _attempts(data_dir) -> dict[str, int]:
    with sqlite3.connect(data_dir / "studio.db") as db:
        return dict(db.execute("SELECT id, attempts FROM jobs"))


def test_sigkill_mid_job_restart_loses_nothing_runs_nothing_twice_and_ctrl_c_requeues(tmp_path):
    # A clip long enough (64 frames, about 2 s a target here) that the kill lands while the second target
    # is under way on a fast machine too: with the shared 16-frame clip that window was shorter than a
    # progress report.
    media = make_media(tmp_path / "media", clip_frames=64)
    data_dir = tmp_path / "data"
    first = ServerProcess(data_dir)
    source, clip, target = (first.upload(media[k]) for k in ("source", "clip", "target"))
    long_job = first.client.post("/api/jobs", json={"sources": [source["id"]],
                                                    "targets": [clip["id"], clip["id"]]}).json()
    image_job = {"sources": [source["id"]], "targets": [target["id"]]}
    queued = [first.client.post("/api/jobs", json=image_job).json() for _ in range(2)]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill once the first target is done and the second under way
        job = first.client.get(f"/api/jobs/{long_job['id']}").json()
        if len(job["outputs"]) == 1 and job["progress"] > 0.55:
            break
        time.sleep(0.05)
    first_output = data_dir / "outputs" / f"{long_job['id']}-0.mp4"
    written = first_output.stat()
    workers = worker_pids(first.process.pid)
    assert workers and job["state"] == "running"
    first.process.kill()  # SIGKILL: no clean-up of any kind
    first.process.wait()
    first.client.close()
    time.sleep(0.5)
    assert not any(alive(pid) for pid in workers), "a worker outlived its killed server"

    second = ServerProcess(data_dir)
    finished = [second.wait_job(j["id"], timeout=180) for j in (long_job, *queued)]
    assert [j["state"] for j in finished] == ["done"] * 3
    assert [o["k"] for o in finished[0]["outputs"]] == [0, 1]
    # Resumed, not redone: the first target's output is the file written before the kill.
    again = first_output.stat()
    assert (again.st_ino, again.st_mtime_ns) == (written.st_ino, written.st_mtime_ns)
    attempts = _attempts(data_dir)
    assert attempts[long_job["id"]] == 2 and all(attempts[j["id"]] == 1 for j in queued)
    names = sorted(p.name for p in (data_dir / "outputs").iterdir())
    assert len(names) == 4 and not [n for n in names if n.startswith(".")], names
    assert not list((data_dir / "tmp").glob("*.part"))  # no upload a killed server was receiving

    # Ctrl-C while a job runs: the server stops cleanly and the job is queued again, not lost.
    job = second.client.post("/api/jobs", json={"sources": [source["id"]], "targets": [clip["id"]]}).json()
    second.wait_job(job["id"], states=("running",))
    while second.client.get(f"/api/jobs/{job['id']}").json()["progress"] < 0.1:
        time.sleep(0.05)
    assert second.stop(signal.SIGINT) == 0
    assert "unfinished jobs stay queued" in second.process.stdout.read()
    with sqlite3.connect(data_dir / "studio.db") as db:
        state, tries = db.execute("SELECT state, attempts FROM jobs WHERE id = ?", (job["id"],)).fetchone()
    assert state == "queued" and tries == 0
    third = ServerProcess(data_dir)
    try:
        assert third.wait_job(job["id"], timeout=180)["state"] == "done"
    finally:
        assert third.stop(signal.SIGTERM) == 0


def test_serve_refuses_a_public_host_without_token_and_a_busy_port(tmp_path, capsys):
    import socket

    from masquerade.cli.main import main

    assert main(["serve", "--host", "0.0.0.0", "--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("masquerade: error: --host 0.0.0.0 is reachable from other machines")
    assert "\n" not in err
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        assert main(["serve", "--port", str(busy.getsockname()[1]), "--data-dir", str(tmp_path / "d")]) == 2
        assert "cannot listen on 127.0.0.1" in capsys.readouterr().err
    finally:
        busy.close()
