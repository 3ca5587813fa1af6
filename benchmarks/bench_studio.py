"""The studio under load: preview latency, status polling during a job, queue drain, kill and restart.

Every figure comes from a real ``masquerade serve`` process on 127.0.0.1 (one worker), driven over HTTP:

1. preview: POST /api/preview at 720p (a 1280x720 frame of a real photo), embedded default models; the
   first call (model load, detection) and then N calls that each change a setting (face mode and
   similarity alternate), as a person moving a control does. p50 / p95 after the first.
2. polling: 20 client threads GET /api/jobs/{id} every 100 ms while a video job runs; errors, p50/p95.
3. drain: 50 image jobs queued at once, drained by the worker; all must end done with one output each.
4. kill: 20 image jobs queued, the server SIGKILLed when about a third are done, started again on the
   same data dir; every job must end done with exactly one output, none run twice to completion.

Run:  .venv/bin/python benchmarks/bench_studio.py [--quick] [--only preview|polling|drain|kill]
The machine's load (``os.getloadavg``) is printed with the figures: quote it with them.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "masquerade", "serve", "--port", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, text=True, start_new_session=True)
        found = re.search(r"http://\S+/", self.process.stdout.readline())
        if found is None:
            raise SystemExit("the server did not start")
        self.client = httpx.Client(base_url=found.group(0).rstrip("/"), timeout=120)

    def upload(self, path: Path) -> str:
        with open(path, "rb") as handle:
            response = self.client.post("/api/files", files={"file": (path.name, handle)})
        response.raise_for_status()
        return response.json()["id"]

    def job(self, sources: list[str], targets: list[str], options: dict | None = None) -> str:
        response = self.client.post("/api/jobs", json={"sources": sources, "targets": targets,
                                                       "options": options or {}})
        response.raise_for_status()
        return response.json()["id"]

    def wait_all(self, ids: list[str], timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            jobs = {j["id"]: j for j in self.client.get("/api/jobs").json()}
            if all(jobs[i]["state"] in ("done", "failed", "cancelled") for i in ids):
                return [jobs[i] for i in ids]
            time.sleep(0.25)
        raise SystemExit(f"jobs not finished after {timeout} s")

    def stop(self, sig: int = signal.SIGINT) -> None:
        self.client.close()
        self.process.send_signal(sig)
        self.process.wait(60)


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f}"


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def media(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True)
    source = folder / "source.jpg"
    cv2.imwrite(str(source), cv2.imread(str(EXAMPLES / "astronaut.png")))
    photo = cv2.imread(str(EXAMPLES / "obama.jpg"))
    scale = 720 / photo.shape[0]
    resized = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)[:, :1280]
    frame = cv2.copyMakeBorder(resized, 0, 0, 0, 1280 - resized.shape[1], cv2.BORDER_REFLECT)
    target720 = folder / "target720.jpg"
    cv2.imwrite(str(target720), frame)
    small = folder / "small.jpg"
    cv2.imwrite(str(small), cv2.resize(cv2.imread(str(EXAMPLES / "biden.jpg")), None, fx=0.25, fy=0.25))
    return {"source": source, "target720": target720, "small": small, "clip": EXAMPLES / "sample.mp4"}


def bench_preview(server: Server, files: dict[str, str], n: int) -> None:
    settings = [{"faces": "all"}, {"faces": "one"}, {"faces": "reference", "similarity": 0.5},
                {"faces": "index", "face_index": 0}]
    times = []
    cpu_before = 0.0
    for i in range(n + 1):
        if i == 1:
            cpu_before = cpu_seconds(server.process.pid)
        started = time.perf_counter()
        response = server.client.post("/api/preview", json={
            "sources": [files["source"]], "target": files["target720"],
            "options": settings[i % len(settings)]})
        response.raise_for_status()
        assert int(response.headers["x-faces-swapped"]) >= 1, settings[i % len(settings)]
        times.append((time.perf_counter() - started) * 1000)
    cpu = (cpu_seconds(server.process.pid) - cpu_before) / n * 1000
    rest = times[1:]
    print(f"preview 720p (embedded default), {n} setting changes, {load()}:")
    print(f"  first {times[0]:.0f} ms; then p50 {percentile(rest, 50):.0f} ms, "
          f"p95 {percentile(rest, 95):.0f} ms, best {min(rest):.0f} ms; server CPU {cpu:.0f} ms per preview "
          "(all threads; robust to load)")


def bench_polling(server: Server, files: dict[str, str], clients: int = 20) -> None:
    job = server.job([files["source"]], [files["clip"]], {"faces": "all"})
    latencies: list[float] = []
    errors: list[str] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=str(server.client.base_url), timeout=30) as client:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    response = client.get(f"/api/jobs/{job}")
                    response.raise_for_status()
                    if response.json()["state"] in ("done", "failed", "cancelled"):
                        done.set()
                except Exception as error:
                    errors.append(repr(error))
                latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(0.1)

    threads = [threading.Thread(target=poll) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    final = server.client.get(f"/api/jobs/{job}").json()
    print(f"{clients} clients polling GET /api/jobs/{{id}} every 100 ms during a 150-frame 540p job, "
          f"{load()}:")
    print(f"  {len(latencies)} requests in {time.perf_counter() - started:.1f} s, {len(errors)} errors, "
          f"p50 {percentile(latencies, 50):.1f} ms, p95 {percentile(latencies, 95):.1f} ms, "
          f"max {max(latencies):.0f} ms; job {final['state']} at {final['fps']} fps")


def bench_drain(server: Server, files: dict[str, str], n: int) -> None:
    started = time.perf_counter()
    ids = [server.job([files["source"]], [files["small"]]) for _ in range(n)]
    queued = time.perf_counter() - started
    jobs = server.wait_all(ids, timeout=60 * n)
    took = time.perf_counter() - started
    ok = sum(j["state"] == "done" and len(j["outputs"]) == 1 for j in jobs)
    print(f"{n} image jobs queued in {queued:.2f} s and drained in {took:.1f} s "
          f"({n / took * 60:.0f} jobs/min), {load()}: {ok}/{n} done with one output each")


def bench_kill(data_dir: Path, n: int) -> None:
    server = Server(data_dir)
    files = {"source": server.upload(data_dir.parent / "media" / "source.jpg"),
             "small": server.upload(data_dir.parent / "media" / "small.jpg")}
    ids = [server.job([files["source"]], [files["small"]]) for _ in range(n)]
    while True:  # kill while a job runs, once a third are done
        jobs = server.client.get("/api/jobs").json()
        if sum(j["state"] == "done" for j in jobs) >= n // 3 and any(j["state"] == "running" for j in jobs):
            break
        time.sleep(0.02)
    server.process.kill()
    server.process.wait()
    with sqlite3.connect(data_dir / "studio.db") as db:  # what the killed server left running
        running = [row[0] for row in db.execute("SELECT id FROM jobs WHERE state = 'running'")]
    started = time.perf_counter()
    again = Server(data_dir)
    jobs = again.wait_all(ids, timeout=60 * n)
    took = time.perf_counter() - started
    with sqlite3.connect(data_dir / "studio.db") as db:
        attempts = dict(db.execute("SELECT id, attempts FROM jobs"))
    outputs = sorted(p.name for p in (data_dir / "outputs").iterdir())
    ok = sum(j["state"] == "done" and len(j["outputs"]) == 1 for j in jobs)
    twice = [i for i in ids if attempts[i] > 1 and i not in running]
    print(f"kill -9 with {n // 3} of {n} jobs done ({len(running)} running), restart: {ok}/{n} done with "
          f"one "
          f"output each, {len(outputs)} output files, re-run: {len(running)} (the running one), other jobs "
          f"run twice: {len(twice)}; drained after restart in {took:.1f} s")
    again.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for a smoke run)")
    parser.add_argument("--only", choices=("preview", "polling", "drain", "kill"), help="run one part")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-studio-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("MASQUERADE_HOME", str(root / "home"))
        paths = media(root / "media")
        server = Server(root / "data")
        try:
            files = {key: server.upload(path) for key, path in paths.items()}
            if args.only in (None, "preview"):
                bench_preview(server, files, 10 if args.quick else 40)
            if args.only in (None, "polling"):
                bench_polling(server, files)
            if args.only in (None, "drain"):
                bench_drain(server, files, 10 if args.quick else 50)
        finally:
            server.stop()
        if args.only in (None, "kill"):
            bench_kill(root / "kill", 9 if args.quick else 20)


if __name__ == "__main__":
    main()
