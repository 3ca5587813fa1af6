"""A real ``masquerade serve`` process for the studio tests, and small media made from the examples."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import httpx

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class ServerProcess:
    """``python -m masquerade serve --port 0`` on a data dir; ``url`` once it listens."""

    def __init__(self, data_dir: Path, *args: str) -> None:
        self.data_dir = data_dir
        self.process = subprocess.Popen(
            [sys.executable, "-m", "masquerade", "serve", "--port", "0", "--data-dir", str(data_dir), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        line = self.process.stdout.readline()
        found = re.search(r"http://\S+/", line)
        if found is None:
            self.process.kill()
            raise RuntimeError(f"the server did not start: {line!r} {self.process.stderr.read()}")
        self.url = found.group(0).rstrip("/")
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> int:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()

    def upload(self, path: Path, name: str | None = None) -> dict:
        with open(path, "rb") as handle:
            response = self.client.post("/api/files", files={"file": (name or path.name, handle)})
        response.raise_for_status()
        return response.json()

    def wait_job(self, job_id: str, states: tuple[str, ...] = ("done", "failed", "cancelled"),
                 timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.get(f"/api/jobs/{job_id}").json()
            if job["state"] in states:
                return job
            time.sleep(0.2)
        raise TimeoutError(f"job {job_id} still {job['state']} after {timeout} s")


def worker_pids(server_pid: int) -> list[int]:
    """Processes whose parent is the server (its job workers)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == server_pid:
                pids.append(int(entry.name))
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rpartition(")")[2].split()[0] != "Z"


def make_media(folder: Path, clip_frames: int = 16) -> dict[str, Path]:
    """A source photo, a target photo and a short talking-head clip (480x270) from the examples."""
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "source.jpg"
    cv2.imwrite(str(source), cv2.imread(str(EXAMPLES / "astronaut.png")), [cv2.IMWRITE_JPEG_QUALITY, 90])
    target = folder / "target.jpg"
    biden = cv2.imread(str(EXAMPLES / "biden.jpg"))
    cv2.imwrite(str(target), cv2.resize(biden, None, fx=0.3, fy=0.3, interpolation=cv2.INTER_AREA))
    clip = folder / "clip.mp4"
    with av.open(str(EXAMPLES / "sample.mp4")) as src, av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 480, 270, "yuv420p"
        for n, frame in enumerate(src.decode(video=0)):
            if n == clip_frames:
                break
            image = cv2.resize(frame.to_ndarray(format="bgr24"), (480, 270), interpolation=cv2.INTER_AREA)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    noface = folder / "noface.png"
    cv2.imwrite(str(noface), cv2.resize(cv2.imread(str(EXAMPLES / "obama.jpg"))[:60, :60], (128, 128)))
    text = folder / "notes.jpg"
    text.write_bytes(b"this is text, not a picture\n" * 20)
    return {"source": source, "target": target, "clip": clip, "noface": noface, "text": text}
