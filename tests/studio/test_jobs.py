"""Jobs on a real ``masquerade serve`` process: run, progress pushed by SSE, failures, cancel, outputs."""

from __future__ import annotations

import json
import threading

from masquerade.verify import verify_file


def test_a_batch_job_runs_with_progress_pushed_and_labelled_outputs(server, media, tmp_path):
    source, clip, target = (server.upload(media[k]) for k in ("source", "clip", "target"))
    created = server.client.post("/api/jobs", json={"sources": [source["id"]], "targets": [clip["id"],
        target["id"]],
                                                    "options": {"faces": "all", "video_quality": 23}})
    assert created.status_code == 201
    job_id = created.json()["id"]
    events = []
    with server.client.stream("GET", f"/api/jobs/{job_id}/events", timeout=120) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
    states = [e["state"] for e in events]
    assert states[0] in ("queued", "running") and states[-1] == "done", (states[-1], events[-1].get("error"))
    progress = [e["progress"] for e in events]
    assert progress == sorted(progress) and progress[-1] == 1.0
    assert any(0 < p < 1 for p in progress), progress  # pushed while running, not only at the end
    assert any(e["fps"] for e in events if e["state"] == "running")
    job = events[-1]
    assert [o["target"] for o in job["outputs"]] == [clip["id"], target["id"]]
    assert job["outputs"][0]["faces_swapped"] == 16 and job["outputs"][1]["faces_swapped"] == 1
    for k, suffix in ((0, ".mp4"), (1, ".jpg")):
        download = server.client.get(f"/api/jobs/{job_id}/outputs/{k}", params={"download": "true"})
        assert download.status_code == 200
        assert download.headers["content-disposition"].startswith("attachment")
        assert download.headers["content-disposition"].endswith(f'-swapped{suffix}"')
        path = tmp_path / f"out{suffix}"
        path.write_bytes(download.content)
        result = verify_file(path)
        assert result.labelled and result.watermark.found and result.label.valid
    inline = server.client.get(f"/api/jobs/{job_id}/outputs/1")
    assert inline.headers["content-disposition"].startswith("inline")
    ranged = server.client.get(f"/api/jobs/{job_id}/outputs/0", headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206 and len(ranged.content) == 100  # videos can be scrubbed in the page
    # Deleting the job deletes its outputs (and only them).
    outputs = sorted(p.name for p in (server.data_dir / "outputs").iterdir())
    assert len([n for n in outputs if n.startswith(job_id)]) == 2
    server.client.delete(f"/api/jobs/{job_id}")
    assert not [p for p in (server.data_dir / "outputs").iterdir() if p.name.startswith(job_id)]


def test_a_failing_job_ends_failed_with_one_line_and_the_queue_goes_on(server, media):
    noface, source, target = (server.upload(media[k]) for k in ("noface", "source", "target"))
    bad = server.client.post("/api/jobs", json={"sources": [noface["id"]], "targets": [target["id"]]}).json()
    good = server.client.post("/api/jobs", json={"sources": [source["id"]], "targets": [target["id"]]}).json()
    failed = server.wait_job(bad["id"])
    assert failed["state"] == "failed" and failed["error"] == "no face found in source image noface.png"
    assert server.wait_job(good["id"])["state"] == "done"
    retried = server.client.post(f"/api/jobs/{bad['id']}/retry").json()
    assert retried["state"] == "queued" and retried["error"] is None
    assert server.wait_job(bad["id"])["state"] == "failed"


def test_cancelling_a_running_job_stops_it_and_leaves_no_file(server, media):
    source = server.upload(media["source"])
    clips = [server.upload(media["clip"]) for _ in range(3)]
    job = server.client.post("/api/jobs", json={"sources": [source["id"]],
                                                "targets": [c["id"] for c in clips]}).json()
    running = threading.Event()

    def watch() -> None:
        with server.client.stream("GET", f"/api/jobs/{job['id']}/events", timeout=120) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:") and json.loads(line[5:])["progress"] > 0.1:
                    running.set()
                    return

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert running.wait(120)
    watcher.join()
    assert server.client.post(f"/api/jobs/{job['id']}/cancel").status_code == 200
    ended = server.wait_job(job["id"])
    assert ended["state"] == "cancelled" and len(ended["outputs"]) < 3
    leftovers = [p.name for p in (server.data_dir / "outputs").iterdir() if p.name.startswith(".")]
    assert leftovers == []
