"""End to end in a real headless Chromium (Debian's package, driven by Playwright for Python).

Drops a source photo and a short video, clicks a face, waits for the preview, queues the job (by
keyboard), watches the progress bar reach 100 %, downloads the output and checks it with
``masquerade verify``, then checks it again in the Verify tab. Screenshots of each step are saved in
``out/studio-e2e/`` of the checkout.
"""

from __future__ import annotations

import base64
import shutil
import time
from pathlib import Path

import pytest

from masquerade.verify import verify_file

ARTEFACTS = Path(__file__).resolve().parents[2] / "out" / "studio-e2e"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api",
        reason="playwright (the dev extra) is not installed")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`; .ci/run installs it)")
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _drop(page, selector: str, files: list[Path]) -> None:
    """A real drop event carrying files, as a person dragging them from a file manager makes."""
    payload = [{"name": p.name, "type": "video/mp4" if p.suffix == ".mp4" else "image/jpeg",
                "data": base64.b64encode(p.read_bytes()).decode()} for p in files]
    transfer = page.evaluate_handle("""(files) => {
        const dt = new DataTransfer();
        for (const f of files) {
            const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
            dt.items.add(new File([bytes], f.name, { type: f.type }));
        }
        return dt;
    }""", payload)
    page.dispatch_event(selector, "dragover", {"dataTransfer": transfer})
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def test_studio_end_to_end_in_chromium(browser, server, media, tmp_path):
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    shot = lambda name: page.screenshot(path=str(ARTEFACTS / f"{name}.png"))  # noqa: E731

    page.goto(server.url + "/")
    page.wait_for_selector("select[name=swapper] option", state="attached")
    assert "inswapper_128 · missing" in page.inner_text("select[name=swapper]")  # not in the test's cache
    page.select_option("select[name=swapper]", "inswapper_128")  # a missing model shows the CLI's hint
    hint = page.inner_text("[data-hint=swapper]")
    assert "run `masquerade models download inswapper_128 w600k_r50`" in hint, hint
    shot("01-missing-model")
    page.select_option("select[name=swapper]", "mesh")
    assert page.is_hidden("[data-hint=swapper]")

    _drop(page, "#drop-sources", [media["source"]])
    _drop(page, "#drop-targets", [media["clip"]])
    page.wait_for_selector("#sources .chip[data-id]")
    page.wait_for_selector(".face")
    page.wait_for_selector("#preview-frame[data-previews]")
    assert page.is_visible("#scrub")
    shot("02-dropped")

    # Scrub to another frame, then click the face there: the preview swaps only that person.
    page.focus("#frame")
    for _ in range(8):
        page.keyboard.press("ArrowRight")
    assert page.input_value("#frame") == "8"
    previews = page.get_attribute("#preview-frame", "data-previews")
    page.wait_for_selector(f"#preview-frame:not([data-previews='{previews}'])")
    page.wait_for_selector(".face")
    previews = page.get_attribute("#preview-frame", "data-previews")
    page.click(".face")
    assert page.get_attribute(".face", "aria-pressed") == "true"
    page.wait_for_selector(f"#preview-frame:not([data-previews='{previews}']):not(.busy)")
    status = page.inner_text("#preview-status")
    assert status.startswith("1 face swapped"), status
    assert page.get_attribute("#preview", "src").startswith("blob:")
    shot("03-preview")

    # Queue it from the keyboard, then watch the progress bar (pushed by SSE) climb to 100 %.
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".job")
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        state = page.get_attribute(".job", "data-state")
        seen.append(int(page.get_attribute(".job .progress", "aria-valuenow") or 0))
        if 0 < seen[-1] < 100 and not (ARTEFACTS / "04-running.png").exists():
            shot("04-running")
        if state in ("done", "failed", "cancelled"):
            break
        time.sleep(0.05)
    assert state == "done", page.inner_text(".job")
    assert seen[-1] == 100 and any(0 < v < 100 for v in seen), seen
    page.wait_for_selector(".job video")
    assert "16 faces swapped" in page.inner_text(".job .outputs")
    shot("05-done")

    with page.expect_download() as download:
        page.click(".job .outputs a")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "clip-swapped.mp4"
    result = verify_file(saved)
    assert result.labelled and result.watermark.found and result.label.valid

    page.click("#tab-verify")
    page.set_input_files("#pick-verify", str(saved))
    page.wait_for_selector(".verify-card dl")
    assert page.inner_text(".verify-card .badge").lower() == "labelled"
    shot("06-verify")
    assert problems == [], problems

