"""Check the studio page in stock Firefox (Debian's firefox-esr) over WebDriver BiDi.

Playwright drives Firefox only through its own patched build (which cannot be downloaded here), and its
BiDi mode needs commands that Firefox ESR lacks, so this speaks WebDriver BiDi itself over a minimal
WebSocket client (standard library only). It starts ``masquerade serve`` on a fresh data dir, uploads a
source photo and a target photo over HTTP, opens the page in headless Firefox, waits until the page
has loaded the model choices and the job list, then drives it: the target becomes current, the
faces come back, a face is clicked and the preview arrives. It reports what the page shows, every
JavaScript error and console error, and saves a screenshot.

Run:  .venv/bin/python tools/studio_firefox_check.py [--out out/studio-e2e/firefox.png]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


class BiDi:
    """Just enough of RFC 6455 (client, text frames, no extensions) to talk WebDriver BiDi."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /session HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise RuntimeError(head.decode(errors="replace"))
        self.next_id, self.events = 0, []

    def _send(self, text: str) -> None:
        data, mask = text.encode(), os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("Firefox closed the connection")
            out += chunk
        return out

    def _receive(self) -> dict:
        message = b""
        while True:
            first, second = self._exact(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack(">H", self._exact(2))[0]
            elif size == 127:
                size = struct.unpack(">Q", self._exact(8))[0]
            message += self._exact(size)
            if first & 0x80:
                return json.loads(message)

    def call(self, method: str, **params: object) -> dict:
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            reply = self._receive()
            if reply.get("id") == self.next_id:
                if reply.get("type") == "error":
                    raise RuntimeError(f"{method}: {reply.get('error')}: {reply.get('message')}")
                return reply["result"]
            self.events.append(reply)

    def evaluate(self, context: str, expression: str) -> object:
        result = self.call("script.evaluate", expression=expression, target={"context": context},
                           awaitPromise=True)
        if result.get("type") == "exception":
            raise RuntimeError(result["exceptionDetails"]["text"])
        return result["result"].get("value")


def wait_for(bidi: BiDi, context: str, expression: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if bidi.evaluate(context, expression):
            return
        time.sleep(0.2)
    raise TimeoutError(expression)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("out/studio-e2e/firefox.png"))
    args = parser.parse_args()
    firefox = shutil.which("firefox-esr") or shutil.which("firefox")
    if firefox is None:
        print("firefox is not installed (apt-get install firefox-esr)")
        return 2
    with tempfile.TemporaryDirectory(prefix="studio-firefox-") as tmp:
        root = Path(tmp)
        env = {**os.environ, "MASQUERADE_HOME": str(root / "home"), "HOME": str(root)}
        server = subprocess.Popen([sys.executable, "-m", "masquerade", "serve", "--port", "0", "--data-dir",
                                   str(root / "data")], stdout=subprocess.PIPE, text=True, env=env)
        url = re.search(r"http://\S+/", server.stdout.readline()).group(0)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        (root / "profile").mkdir()
        browser = subprocess.Popen([firefox, "--headless", "--remote-debugging-port", str(port), "--profile",
                                    str(root / "profile"), "--no-remote"], env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            client = httpx.Client(base_url=url.rstrip("/"), timeout=60)
            ids = {}
            for key, path in (("source", EXAMPLES / "astronaut.png"), ("target", EXAMPLES / "obama2.jpg")):
                with open(path, "rb") as handle:
                    ids[key] = client.post("/api/files", files={"file": (path.name, handle)}).json()
            for _ in range(100):
                try:
                    bidi = BiDi(port)
                    break
                except OSError:
                    time.sleep(0.2)
            bidi.call("session.new", capabilities={})
            bidi.call("session.subscribe", events=["log.entryAdded"])
            context = bidi.call("browsingContext.getTree")["contexts"][0]["context"]
            bidi.call("browsingContext.setViewport", context=context, viewport={"width": 1280, "height": 800})
            bidi.call("browsingContext.navigate", context=context, url=url, wait="complete")
            version = bidi.evaluate(context, "navigator.userAgent")
            wait_for(bidi, context, "document.querySelectorAll('select[name=swapper] option').length > 1")
            # The page has no "open these ids" URL: hand it the uploaded files as a person's drop would.
            source_id, target_id = ids["source"]["id"], ids["target"]["id"]
            drop = """(async () => {
                const make = async (id, name) => { const r = await fetch(`/api/files/${id}/content`);
                    return new File([await r.blob()], name, { type: r.headers.get('content-type') }); };
                for (const [zone, id, name] of [['#drop-sources', 'SOURCE', 'astronaut.png'],
                                                ['#drop-targets', 'TARGET', 'obama2.jpg']]) {
                    const dt = new DataTransfer(); dt.items.add(await make(id, name));
                    document.querySelector(zone).dispatchEvent(new DragEvent('drop', { dataTransfer: dt,
                        bubbles: true, cancelable: true }));
                    await new Promise((r) => setTimeout(r, 1500));
                } return true; })()""".replace("SOURCE", source_id).replace("TARGET", target_id)
            bidi.evaluate(context, drop)
            wait_for(bidi, context, "document.querySelector('.face') !== null", 120)
            frame = "document.querySelector('#preview-frame')"
            wait_for(bidi, context, f"{frame}.dataset.previews !== undefined", 120)
            before = bidi.evaluate(context, f"{frame}.dataset.previews")
            bidi.evaluate(context, "document.querySelector('.face').click(), true")
            wait_for(bidi, context, f"{frame}.dataset.previews !== '{before}' && "
                                    f"!{frame}.classList.contains('busy')", 120)
            status = bidi.evaluate(context, "document.querySelector('#preview-status').textContent")
            pressed = bidi.evaluate(context, "document.querySelector('.face').getAttribute('aria-pressed')")
            shot = bidi.call("browsingContext.captureScreenshot", context=context)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_bytes(base64.b64decode(shot["data"]))
            errors = [e["params"] for e in bidi.events if e.get("method") == "log.entryAdded"
                      and e["params"].get("level") == "error"]
            print(f"browser: {version}")
            print(f"preview status: {status!r}; face pressed: {pressed}; screenshot: {args.out}")
            print(f"JavaScript/console errors: {len(errors)}")
            for error in errors:
                print(f"  {error.get('text')}")
            return 0 if not errors and status.startswith("1 face swapped") else 1
        finally:
            browser.terminate()
            server.terminate()
            browser.wait(20)
            server.wait(30)


if __name__ == "__main__":
    sys.exit(main())
