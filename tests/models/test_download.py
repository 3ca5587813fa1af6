"""Verified, resumable downloads from a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import io
import os
import socket
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from modelkit import FAST_RETRY, FileServer, sha256

from masquerade.errors import ChecksumMismatch, ModelError, ModelNotCached
from masquerade.models.download import RetryPolicy
from masquerade.models.manifest import ArchiveSource, ModelSpec, get_spec
from masquerade.models.store import ModelStore

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # > 1 chunk, so progress and resume cross chunk borders


def _spec(server: FileServer, data: bytes = PAYLOAD, *urls: str) -> ModelSpec:
    server.files["model.onnx"] = data
    return replace(get_spec("inswapper_128"), urls=urls or (server.url("model.onnx"),),
                   sha256=(sha256(data),), size=len(data))


def _store(root: Path, *specs: ModelSpec) -> ModelStore:
    return ModelStore(root, retry=FAST_RETRY, models={s.name: s for s in specs})


def test_download_verifies_and_moves_into_cache(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    store = _store(tmp_path, spec)
    seen: list[tuple[int, int | None]] = []
    path = store.download(spec, progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / spec.file_name
    assert path.read_bytes() == PAYLOAD
    assert not path.with_name(path.name + ".part").exists()
    assert seen[0] == (0, len(PAYLOAD)) and seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [v.status for v in store.verify()] == ["ok"]
    # Installed: a second download does not touch the network.
    n = len(http_server.requests)
    assert store.download(spec) == path and len(http_server.requests) == n


def test_interrupted_download_resumes_with_range(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    http_server.cut_after["model.onnx"] = [1_500_000, 700_000]  # two drops, then a full answer
    path = _store(tmp_path, spec).download(spec)
    assert path.read_bytes() == PAYLOAD
    assert [r for _, r in http_server.requests] == [None, "bytes=1500000-", "bytes=2200000-"]


def test_part_left_by_an_earlier_run_is_resumed(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    (tmp_path / "inswapper_128.onnx.part").write_bytes(PAYLOAD[:1000])
    _store(tmp_path, spec).download(spec)
    assert http_server.requests == [("/model.onnx", "bytes=1000-")]
    assert (tmp_path / "inswapper_128.onnx").read_bytes() == PAYLOAD


def test_foreign_part_file_is_restarted_once(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    (tmp_path / "inswapper_128.onnx.part").write_bytes(b"x" * 1000)  # not a prefix of the file
    _store(tmp_path, spec).download(spec)
    assert [r for _, r in http_server.requests] == ["bytes=1000-", None]
    assert (tmp_path / "inswapper_128.onnx").read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts_from_zero(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    http_server.cut_after["model.onnx"] = [500_000]
    http_server.ignore_range.add("model.onnx")
    _store(tmp_path, spec).download(spec)
    assert (tmp_path / "inswapper_128.onnx").read_bytes() == PAYLOAD


def test_hash_mismatch_deletes_file_and_says_so(http_server: FileServer, tmp_path: Path) -> None:
    spec = replace(_spec(http_server), sha256=("0" * 64,))
    with pytest.raises(ChecksumMismatch, match="checksum mismatch, the downloaded file was deleted") as info:
        _store(tmp_path, spec).download(spec)
    assert sha256(PAYLOAD) in str(info.value)
    assert "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_next_mirror_after_a_dead_one(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    spec = replace(spec, urls=(http_server.url("gone.onnx"), http_server.url("model.onnx")))
    _store(tmp_path, spec).download(spec)
    assert [p for p, _ in http_server.requests] == ["/gone.onnx", "/model.onnx"]  # 404: no retry


def test_retries_are_bounded(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    http_server.fail_status["model.onnx"] = [503] * 10
    with pytest.raises(ModelError, match="gave up after 3 attempts") as info:
        _store(tmp_path, spec).download(spec)
    assert not isinstance(info.value, ChecksumMismatch)
    assert len(http_server.requests) == 3


def test_transient_errors_are_retried(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    http_server.fail_status["model.onnx"] = [503, 500]
    _store(tmp_path, spec).download(spec)
    assert (tmp_path / "inswapper_128.onnx").read_bytes() == PAYLOAD


def test_offline_gives_one_clear_message(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    with pytest.raises(ModelNotCached) as info:
        _store(tmp_path, spec).download(spec, offline=True)
    message = str(info.value)
    assert "inswapper_128.onnx" in message and str(tmp_path) in message
    assert "masquerade models download inswapper_128" in message
    assert http_server.requests == []


def test_unpinned_model_is_not_downloaded(http_server: FileServer, tmp_path: Path) -> None:
    spec = replace(_spec(http_server), sha256=())
    with pytest.raises(ModelError, match="--allow-unknown-hash"):
        _store(tmp_path, spec).download(spec)
    assert http_server.requests == []


def test_model_extracted_from_verified_archive(http_server: FileServer, tmp_path: Path) -> None:
    member = os.urandom(5000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("buffalo_l/det_10g.onnx", member)
        zf.writestr("buffalo_l/other.onnx", b"other")
    http_server.files["buffalo_l.zip"] = buf.getvalue()
    spec = replace(get_spec("det_10g"), sha256=(sha256(member),), archive=ArchiveSource(
        (http_server.url("buffalo_l.zip"),), (sha256(buf.getvalue()),), "det_10g.onnx"))
    store = _store(tmp_path, spec)
    assert store.download(spec).read_bytes() == member
    assert not (tmp_path / "archives" / "buffalo_l.zip").exists()  # no other model needs it
    assert [v.status for v in store.verify()] == ["ok"]


def test_ensure_downloads_missing_models_or_names_them_all(http_server: FileServer, tmp_path: Path) -> None:
    swapper = _spec(http_server)
    recognizer = replace(get_spec("w600k_r50"), urls=(http_server.url("model.onnx"),),
                         sha256=swapper.sha256, archive=None)
    store = _store(tmp_path, swapper, recognizer)
    with pytest.raises(ModelNotCached, match=r"inswapper_128\.onnx, w600k_r50\.onnx .*offline"):
        store.ensure([swapper, recognizer], offline=True)
    unpinned = replace(recognizer, sha256=())
    with pytest.raises(ModelNotCached, match="w600k_r50: no pinned SHA-256"):
        _store(tmp_path, swapper, unpinned).ensure([swapper, unpinned])
    assert http_server.requests == []  # nothing fetched when one file cannot be
    paths = store.ensure([swapper, recognizer])
    assert sorted(paths) == ["inswapper_128", "w600k_r50"]
    assert all(p.read_bytes() == PAYLOAD for p in paths.values())


def test_unresolvable_host_fails_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def no_dns(request: urllib.request.Request, timeout: float) -> None:
        calls.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_dns)
    spec = replace(get_spec("inswapper_128"), urls=("https://a.example/m.onnx", "https://b.example/m.onnx"))
    with pytest.raises(ModelNotCached, match="cannot resolve the host") as info:
        _store(tmp_path, spec).download(spec)
    assert calls == list(spec.urls)  # one try per mirror, no retries
    assert f"put inswapper_128.onnx into {tmp_path}" in str(info.value)


def test_download_replaces_a_damaged_file(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    store = _store(tmp_path, spec)
    (tmp_path / spec.file_name).write_bytes(b"truncated")
    assert store.status(spec) == "mismatch"
    assert store.download(spec).read_bytes() == PAYLOAD
    assert store.status(spec) == "ok"
    assert len(http_server.requests) == 1


def test_resume_through_a_redirect(http_server: FileServer, tmp_path: Path) -> None:
    spec = _spec(http_server)
    http_server.redirects["release/model.onnx"] = "model.onnx"
    spec = replace(spec, urls=(http_server.url("release/model.onnx"),))
    http_server.cut_after["model.onnx"] = [2_000_000]
    _store(tmp_path, spec).download(spec)
    assert (tmp_path / "inswapper_128.onnx").read_bytes() == PAYLOAD
    resumed = "bytes=2000000-"
    assert http_server.requests == [("/release/model.onnx", None), ("/model.onnx", None),
                                    ("/release/model.onnx", resumed), ("/model.onnx", resumed)]


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A server that accepts connections and never answers (a network that drops packets)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        sock.close()


def test_silent_network_is_reported_and_given_up_soon(black_hole: str, tmp_path: Path) -> None:
    spec = replace(get_spec("inswapper_128"), urls=(f"{black_hole}/a.onnx", f"{black_hole}/b.onnx"),
                   sha256=(sha256(b"x"),), size=1)
    store = ModelStore(tmp_path, retry=RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=0.2),
                       models={spec.name: spec})
    said: list[str] = []
    started = time.monotonic()
    with pytest.raises(ModelNotCached, match=r"no answer within 0\.2 s"):
        store.download(spec, status=said.append)
    # Three tries on the first mirror, then one on the next: the network, not the mirror, is down.
    assert sum("connecting to" in line for line in said) == 4
    assert any("trying again" in line for line in said) and any("gave up" in line for line in said)
    assert time.monotonic() - started < 5
