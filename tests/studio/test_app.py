"""The REST API in process (FastAPI's test client, no worker): every endpoint and its errors."""

from __future__ import annotations

import json
import re

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from masquerade.studio.app import create_app
from masquerade.studio.datadir import DataDir
from masquerade.studio.settings import StudioSettings
from masquerade.studio.store import JobStore

ID = re.compile(r"^[A-Za-z0-9_-]{24}$")


def make_client(root, **settings) -> TestClient:
    data = DataDir(root)
    data.create()
    store = JobStore(data.db)
    store.initialise()
    app = create_app(StudioSettings(data_dir=root, **settings), data, store)
    return TestClient(app, base_url="http://127.0.0.1:8765")


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    root = tmp_path_factory.mktemp("studio-app")
    with make_client(root, max_upload_bytes=3 * 2**20) as client:
        client.root = DataDir(root).root
        yield client


@pytest.fixture(scope="module")
def files(studio, media):
    def up(key, name=None):
        with open(media[key], "rb") as handle:
            response = studio.post("/api/files", files={"file": (name or media[key].name, handle)})
        assert response.status_code == 201, response.text
        return response.json()

    return {"source": up("source"), "target": up("target"), "clip": up("clip"), "noface": up("noface")}


def stored_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_health_and_openapi_and_docs(studio):
    assert studio.get("/api/health").json()["status"] == "ok"
    spec = studio.get("/api/openapi.json").json()
    for path in ("/api/files", "/api/files/{file_id}/faces", "/api/preview", "/api/jobs",
        "/api/jobs/{job_id}",
                 "/api/jobs/{job_id}/events", "/api/jobs/{job_id}/cancel", "/api/jobs/{job_id}/move",
                 "/api/jobs/{job_id}/outputs/{k}", "/api/verify"):
        assert path in spec["paths"], path
    assert "multipart/form-data" in spec["paths"]["/api/files"]["post"]["requestBody"]["content"]
    docs = studio.get("/api/docs")
    assert docs.status_code == 200 and "docs.js" in docs.text


def test_page_has_a_strict_csp_and_no_cors(studio):
    page = studio.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    preflight = studio.options("/api/jobs", headers={"Origin": "http://127.0.0.1:8765",
                                                     "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    # A page of another origin cannot use the API (a browser sends its Origin).
    other = studio.post("/api/jobs", json={}, headers={"Origin": "http://evil.example"})
    assert other.status_code == 403 and "access-control-allow-origin" not in other.headers
    # DNS rebinding: a loopback server answers loopback host names only.
    assert studio.get("/api/health", headers={"Host": "evil.example"}).status_code == 403
    assert studio.get("/api/health", headers={"Host": "localhost:8765"}).status_code == 200
    for static in ("app.js", "api.js", "jobs.js", "verify.js", "style.css", "docs.js"):
        assert studio.get(f"/static/{static}").status_code == 200, static


def test_upload_probes_content_and_describes_files(files):
    assert files["source"]["kind"] == "image" and (files["source"]["width"],
        files["source"]["height"]) == (512, 512)
    clip = files["clip"]
    assert clip["kind"] == "video" and (clip["width"], clip["height"], clip["frames"]) == (480, 270, 16)
    assert clip["fps"] == 25.0
    for record in files.values():
        assert ID.match(record["id"])
    # An id is 144 random bits: all different, nothing sequential.
    assert len({r["id"] for r in files.values()}) == len(files)


def test_upload_names_are_never_paths(studio, media):
    before = stored_files(studio.root)
    for name in ("../../escape.jpg", "/etc/passwd", "..\\..\\win.jpg", "a\x00b.jpg", "....//x.jpg",
        ".hidden", ""):
        with open(media["source"], "rb") as handle:
            response = studio.post("/api/files", files={"file": (name, handle)})
        assert response.status_code == 201, (name, response.text)
        shown = response.json()["name"]
        assert "/" not in shown and "\\" not in shown and "\x00" not in shown and not shown.startswith(".")
    after = stored_files(studio.root)
    added = [p for p in after if p not in before]
    assert len(added) == 7 and all(re.match(r"^uploads/[A-Za-z0-9_-]{24}\.jpg$", p) for p in added), added
    assert not (studio.root.parent / "escape.jpg").exists()


def test_upload_size_limit_is_enforced_while_streaming(studio):
    before = stored_files(studio.root)
    big = b"\xff\xd8\xff" + b"\0" * (4 * 2**20)

    def chunks():  # no Content-Length: the limit must hold while the body streams in
        boundary = b"XyZ"
        yield b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jpg\"\r\n\r\n"
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]
        yield b"\r\n--" + boundary + b"--\r\n"

    response = studio.post("/api/files", content=chunks(),
                           headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert response.status_code == 413 and "upload limit of 3 MB" in response.json()["detail"]
    declared = studio.post("/api/files", files={"file": ("big.jpg", big)})
    assert declared.status_code == 413
    assert stored_files(studio.root) == before


def test_upload_errors_are_one_line(studio, media):
    with open(media["text"], "rb") as handle:
        bad = studio.post("/api/files", files={"file": ("notes.jpg", handle)})
    assert bad.status_code == 400
    detail = bad.json()["detail"]
    assert detail.startswith("notes.jpg") and "\n" not in detail and str(studio.root) not in detail
    empty = studio.post("/api/files", files={"file": ("empty.png", b"")})
    assert empty.status_code == 400 and empty.json()["detail"] == "empty.png is empty"
    assert studio.post("/api/files", files={"other": ("x.png", b"123")}).status_code == 400
    assert studio.post("/api/files", content=b"raw", headers={"Content-Type": "image/png"}).status_code == 415
    assert not list((studio.root / "tmp").iterdir())


def test_file_endpoints(studio, files):
    clip = files["clip"]
    assert studio.get(f"/api/files/{clip['id']}").json() == clip
    content = studio.get(f"/api/files/{files['source']['id']}/content")
    assert content.headers["content-type"] == "image/jpeg" and content.content[:3] == b"\xff\xd8\xff"
    frame = studio.get(f"/api/files/{clip['id']}/frame", params={"n": 9})
    image = cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (270, 480, 3)
    for path in ("/api/files/nope", "/api/files/" + "A" * 24, "/api/files/" + "A" * 24 + "/faces"):
        assert studio.get(path).status_code == 404
    assert studio.get(f"/api/files/{clip['id']}/frame", params={"n": -1}).status_code == 422


def test_faces_come_with_boxes_and_thumbnails_usable_as_reference(studio, files):
    clip = files["clip"]
    found = studio.get(f"/api/files/{clip['id']}/faces", params={"frame": 999}).json()
    assert found["frame"] == 15  # clamped to the last frame
    faces = found["faces"]
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0]["box"]
    assert 0 <= x1 < x2 <= 480 and 0 <= y1 < y2 <= 270 and x2 - x1 > 40
    thumb = studio.get(faces[0]["thumbnail"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert studio.get(f"/api/files/{files['noface']['id']}/faces").json()["faces"] == []


def test_preview_is_a_watermarked_labelled_jpeg(studio, files):
    from masquerade.verify import verify_file

    reference = studio.get(f"/api/files/{files['clip']['id']}/faces", params={"frame": 3}).json()["faces"][0]
    response = studio.post("/api/preview", json={
        "sources": [files["source"]["id"]], "target": files["clip"]["id"], "frame": 3,
        "options": {"reference": reference["reference"], "faces": "reference"}})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg" and response.headers["x-faces-swapped"] == "1"
    path = studio.root / "tmp" / "preview-check.jpg"
    path.write_bytes(response.content)
    result = verify_file(path)
    path.unlink()
    assert result.watermark.found and result.label.kind == "c2pa" and result.label.valid
    original = cv2.imdecode(np.frombuffer(studio.get(f"/api/files/{files['clip']['id']}/frame",
                                                     params={"n": 3}).content, np.uint8), cv2.IMREAD_COLOR)
    swapped = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
    x1, y1, x2, y2 = (int(v) for v in reference["box"])
    face_change = np.abs(swapped[y1:y2, x1:x2].astype(int) - original[y1:y2, x1:x2]).mean()
    corner_change = np.abs(swapped[:40, -60:].astype(int) - original[:40, -60:]).mean()
    assert face_change > 4 * corner_change and face_change > 5


def test_preview_errors(studio, files):
    base = {"sources": [files["source"]["id"]], "target": files["target"]["id"]}
    no_face = studio.post("/api/preview", json={**base, "sources": [files["noface"]["id"]]})
    assert no_face.status_code == 422
    assert no_face.json()["detail"] == "no face found in source image noface.png"
    video_source = studio.post("/api/preview", json={**base, "sources": [files["clip"]["id"]]})
    assert video_source.status_code == 422 and "is a video" in video_source.json()["detail"]
    assert studio.post("/api/preview", json={**base, "target": "A" * 24}).status_code == 404
    missing = studio.post("/api/preview", json={**base, "options": {"swapper": "inswapper_128"}})
    assert missing.status_code == 422 and missing.json()["option"] == "swapper"
    assert "masquerade models download inswapper_128 w600k_r50" in missing.json()["detail"]
    assert studio.post("/api/preview", json={**base, "extra": 1}).status_code == 422
    assert studio.post("/api/preview",
        json={"target": files["target"]["id"]}).json()["detail"].startswith("sources")


@pytest.mark.parametrize(("options", "option", "says"), [
    ({"swapper": "nope"}, "swapper", "invalid choice"),
    ({"face_index": "two"}, "face_index", "invalid int value"),
    ({"similarity": "x"}, "similarity", "invalid float value"),
    ({"pixel_boost": 300}, "pixel_boost", "invalid choice"),
    ({"skip_audio": "yes"}, "skip_audio", "true or false"),
    ({"frobnicate": 1}, "frobnicate", "unknown option"),
    ({"models_dir": "/tmp"}, "models_dir", "not available in the studio"),
    ({"reference": "A" * 24}, "reference", "no file"),
    ({"faces": ["all"]}, "faces", "single value"),
    ({"enhancer": "gfpgan_1.4"}, "enhancer", "masquerade models download gfpgan_1.4"),
    ({"video_quality": 99}, "video_quality", "must be between 0 and 51"),
    ({"pixel_boost": 256}, "pixel_boost", "applies to neural swappers only"),
    ({"trim_start": 2}, "trim_start", "applies to video targets only"),  # the target is an image
    ({"faces": "all", "similarity": 0.3}, "similarity", "applies only with faces reference"),
])
def test_invalid_options_are_422_naming_the_option_and_nothing_is_queued(studio, files, options, option,
    says):
    before = studio.get("/api/jobs").json()
    response = studio.post("/api/jobs", json={"sources": [files["source"]["id"]],
                                              "targets": [files["target"]["id"]], "options": options})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["option"] == option and says in body["detail"]
    assert body["detail"].startswith(f"option {option}")
    assert studio.get("/api/jobs").json() == before


def test_a_mixed_batch_takes_video_options_for_its_videos(studio, files):
    response = studio.post("/api/jobs", json={"sources": [files["source"]["id"]],
                                              "targets": [files["target"]["id"], files["clip"]["id"]],
                                              "options": {"trim_end": 0.4, "image_quality": 90}})
    assert response.status_code == 201, response.text
    studio.delete(f"/api/jobs/{response.json()['id']}")


def test_queue_operations_without_a_worker(studio, files):
    body = {"sources": [files["source"]["id"]], "targets": [files["target"]["id"]],
        "options": {"faces": "all"}}
    ids = []
    for _ in range(3):
        response = studio.post("/api/jobs", json=body)
        assert response.status_code == 201 and response.json()["state"] == "queued"
        ids.append(response.json()["id"])
    order = lambda: [j["id"] for j in studio.get("/api/jobs").json() if j["id"] in ids]  # noqa: E731
    assert order() == ids
    moved = studio.post(f"/api/jobs/{ids[2]}/move", json={"position": 0}).json()
    assert moved["position"] == 0 and order() == [ids[2], ids[0], ids[1]]
    studio.post(f"/api/jobs/{ids[2]}/move", json={"position": 99})
    assert order() == [ids[0], ids[1], ids[2]]
    assert studio.post(f"/api/jobs/{ids[0]}/move", json={"position": -1}).status_code == 422
    job = studio.get(f"/api/jobs/{ids[0]}").json()
    assert set(job) >= {"id", "state", "progress", "fps", "eta_s", "error", "outputs"}
    assert studio.post(f"/api/jobs/{ids[0]}/retry").status_code == 409  # queued: nothing to retry
    assert studio.post(f"/api/jobs/{ids[0]}/cancel").json()["state"] == "cancelled"
    assert studio.post(f"/api/jobs/{ids[0]}/cancel").status_code == 409
    retried = studio.post(f"/api/jobs/{ids[0]}/retry").json()
    assert retried["state"] == "queued" and order()[-1] == ids[0]
    assert studio.get(f"/api/jobs/{ids[1]}/outputs/0").status_code == 404
    # A file used by an unfinished job cannot be deleted from under it.
    assert studio.delete(f"/api/files/{files['target']['id']}").status_code == 409
    for job_id in ids:
        assert studio.delete(f"/api/jobs/{job_id}").json()["deleted"]
        assert studio.get(f"/api/jobs/{job_id}").status_code == 404
    assert studio.post("/api/jobs/" + "A" * 24 + "/cancel").status_code == 404
    assert studio.post("/api/jobs", json={**body, "targets": []}).status_code == 422


def test_job_events_stream_changes_until_the_job_ends(studio, files):
    job = studio.post("/api/jobs", json={"sources": [files["source"]["id"]],
                                         "targets": [files["target"]["id"]]}).json()
    states = []
    with studio.stream("GET", f"/api/jobs/{job['id']}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        for line in stream.iter_lines():
            if line.startswith("data:"):
                states.append(json.loads(line[5:])["state"])
                if states == ["queued"]:
                    studio.post(f"/api/jobs/{job['id']}/cancel")
    assert states == ["queued", "cancelled"]  # and the stream ended by itself
    studio.delete(f"/api/jobs/{job['id']}")


def test_verify_endpoint_matches_the_cli_json(studio, files, media, tmp_path):
    response = studio.post("/api/preview", json={"sources": [files["source"]["id"]],
                                                 "target": files["target"]["id"]})
    labelled = studio.post("/api/verify", files={"file": ("preview.jpg", response.content)}).json()
    assert labelled["all_labelled"] and labelled["exit_code"] == 0
    entry = labelled["files"][0]
    assert entry["path"] == "preview.jpg" and entry["watermark"]["found"] and entry["c2pa"]["valid"]
    with open(media["target"], "rb") as handle:
        plain = studio.post("/api/verify", files={"file": ("target.jpg", handle)}).json()
    assert not plain["all_labelled"] and plain["exit_code"] == 1
    with open(media["text"], "rb") as handle:
        bad = studio.post("/api/verify", files={"file": ("notes.jpg", handle)})
    assert bad.status_code == 400 and bad.json()["exit_code"] == 2 and bad.json()["files"][0]["error"]
    assert not list((studio.root / "tmp").iterdir())


def test_model_choices_say_what_is_installed_with_the_cli_hint(studio):
    choices = studio.get("/api/models").json()["choices"]
    mesh = next(c for c in choices["swapper"] if c["value"] == "mesh")
    assert mesh["installed"] and mesh["embedded"] and mesh["hint"] is None
    inswapper = next(c for c in choices["swapper"] if c["value"] == "inswapper_128")
    assert not inswapper["installed"]
    assert "run `masquerade models download inswapper_128 w600k_r50`" in inswapper["hint"]
    assert {c["value"] for c in choices["enhancer"]} == {"none", "gfpgan_1.4", "codeformer"}
    assert {c["value"] for c in choices["detector"]} == {"mesh", "scrfd"}


def test_refused_input_is_deleted(studio, files, media, monkeypatch):
    from masquerade._stages import guard

    # A stand-in for NudeNet: refuses pictures whose first pixel is pure magenta.
    def detect(self, image, faces=(), whole=True, remember=False):
        hit = tuple(image[0, 0]) == (255, 0, 255)
        return [guard.Detection("FEMALE_BREAST_EXPOSED", 0.9)] if hit else []

    monkeypatch.setattr(guard.ContentGuard, "detect", detect)
    image = cv2.imread(str(media["target"]))
    image[:8, :8] = (255, 0, 255)
    _, data = cv2.imencode(".png", image)
    upload = studio.post("/api/files", files={"file": ("marked.png", data.tobytes())}).json()
    path = studio.root / "uploads" / f"{upload['id']}.png"
    assert path.exists()
    response = studio.post("/api/preview", json={"sources": [files["source"]["id"]], "target": upload["id"]})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("refused: marked.png appears to show sexual content")
    assert not path.exists() and studio.get(f"/api/files/{upload['id']}").status_code == 404


def test_token_rule(tmp_path, media):
    with pytest.raises(Exception, match="--token"):
        StudioSettings(data_dir=tmp_path, host="0.0.0.0")
    with make_client(tmp_path / "t", token="s3cret-token") as client:
        assert client.get("/").status_code == 200  # the page itself holds nothing
        denied = client.get("/api/health")
        assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        auth = {"Authorization": "Bearer s3cret-token"}
        assert client.get("/api/health", headers=auth).status_code == 200
        session = client.post("/api/session", headers=auth)
        cookie = session.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "s3cret-token" not in cookie
        assert client.get("/api/jobs").status_code == 200  # the cookie now
        client.cookies.clear()
        assert client.get("/api/jobs").status_code == 401


def test_a_job_whose_input_is_refused_fails_and_the_input_is_deleted(tmp_path, media, monkeypatch):
    """The worker's side, run in process: the guard's refusal fails the job and deletes that input."""
    import shutil

    from masquerade._stages import guard
    from masquerade.studio.store import FileRecord
    from masquerade.studio.worker import JobRunner

    monkeypatch.setattr(guard.ContentGuard, "detect", lambda self, image, *views, **kw: (
        [guard.Detection("FEMALE_GENITALIA_EXPOSED", 0.8)] if tuple(image[0, 0]) == (255, 0, 255) else []))
    data = DataDir(tmp_path)
    data.create()
    store = JobStore(data.db)
    store.initialise()
    shutil.copy(media["source"], data.uploads / f"{'s' * 24}.jpg")
    image = cv2.imread(str(media["target"]))
    image[:8, :8] = (255, 0, 255)
    cv2.imwrite(str(data.uploads / f"{'t' * 24}.png"), image)
    for file_id, name, path in (("s" * 24, "me.jpg", f"uploads/{'s' * 24}.jpg"),
                                ("t" * 24, "party.png", f"uploads/{'t' * 24}.png")):
        store.add_file(FileRecord(id=file_id, name=name, kind="image", path=path, width=1, height=1,
                                  frames=1, fps=None, size=1))
    store.add_job({"sources": ["s" * 24], "targets": ["t" * 24], "options": {}})
    job, claim = store.claim_next(worker=0)
    JobRunner(data, store).run(job, claim)
    ended = store.job(job.id)
    assert ended.state == "failed"
    assert ended.error.startswith("refused: target party.png appears to show sexual content (female")
    assert store.file("t" * 24) is None and not (data.uploads / f"{'t' * 24}.png").exists()
    assert store.file("s" * 24) is not None  # the source was not refused: it stays
