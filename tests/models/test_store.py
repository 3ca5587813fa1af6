"""The cache: require, import with contract check, verify, licence notices, cache location."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from modelkit import F32, sha256, write_onnx
from onnx import TensorProto

from masquerade.errors import ChecksumMismatch, ModelError, ModelNotCached, UsageError
from masquerade.models.contract import contract_problems, read_contract
from masquerade.models.manifest import MODELS, get_spec
from masquerade.models.store import ModelStore, default_home, licence_notice


def test_require_lists_every_missing_file_in_one_message(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    swapper, recognizer = get_spec("inswapper_128"), get_spec("w600k_r50")
    with pytest.raises(ModelNotCached) as info:
        store.require([swapper, recognizer])
    message = str(info.value)
    assert "inswapper_128.onnx, w600k_r50.onnx" in message
    assert str(tmp_path) in message
    assert "masquerade models download inswapper_128 w600k_r50" in message
    assert "\n" not in message


def test_load_hashes_the_bytes_it_returns_and_trusts_no_stamp(tmp_path: Path) -> None:
    data = b"model bytes"
    spec = replace(get_spec("gfpgan_1.4"), sha256=(sha256(data),))
    path = tmp_path / spec.file_name
    path.write_bytes(data)
    store = ModelStore(tmp_path, models={spec.name: spec})
    assert store.require([spec]) == {spec.name: path}
    loaded = store.load(spec)
    assert (loaded.data, loaded.sha256, loaded.known_hash) == (data, sha256(data), True)
    assert loaded.unverified_notice() is None
    # Replaced behind a forged stamp (the old size + mtime check would have trusted it): refused.
    stat = path.stat()
    path.write_bytes(b"tampered!!!")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    stamps = json.loads((tmp_path / "verified.json").read_text())
    stamps[spec.file_name].update(size=path.stat().st_size, mtime_ns=stat.st_mtime_ns)
    (tmp_path / "verified.json").write_text(json.dumps(stamps))
    assert store.status(spec) == "mismatch"
    with pytest.raises(ChecksumMismatch, match=r"models download gfpgan_1\.4"):
        store.load(spec)
    assert [v.status for v in store.verify()] == ["mismatch"]


def test_an_accepted_unknown_hash_loads_with_a_notice_and_only_while_unchanged(
    tmp_path: Path, inswapper_standin: Path
) -> None:
    store = ModelStore(tmp_path / "cache")
    spec = get_spec("inswapper_128")
    store.import_file(inswapper_standin, "inswapper_128", allow_unknown_hash=True)
    loaded = store.load(spec)
    assert loaded.known_hash is False and loaded.data == inswapper_standin.read_bytes()
    notice = loaded.unverified_notice()
    assert notice is not None and "unverified" in notice and "--allow-unknown-hash" in notice
    # Another file put in its place: not the hash the user accepted, so refused.
    inputs = [("target", F32, [1, 3, 128, 128]), ("source", F32, [1, 512])]
    other = write_onnx(tmp_path / "other.onnx", inputs, [("out", F32, [1, 3, 128, 128])])
    store.path(spec).write_bytes(other.read_bytes())
    with pytest.raises(ChecksumMismatch):
        store.load(spec)


def test_import_checks_hash_then_contract(tmp_path: Path, inswapper_standin: Path) -> None:
    store = ModelStore(tmp_path / "cache")
    with pytest.raises(ChecksumMismatch, match="--allow-unknown-hash"):
        store.import_file(inswapper_standin, "inswapper_128")
    assert not (tmp_path / "cache" / "inswapper_128.onnx").exists()
    result = store.import_file(inswapper_standin, "inswapper_128", allow_unknown_hash=True)
    assert result.known_hash is False and result.sha256 == sha256(inswapper_standin.read_bytes())
    assert result.path.read_bytes() == inswapper_standin.read_bytes() and not result.path.is_symlink()
    [status] = [v for v in store.verify() if v.status != "missing"]
    assert (status.name, status.status) == ("inswapper_128", "accepted")
    assert store.require([get_spec("inswapper_128")])  # accepted files are usable


def test_import_known_hash_by_hash_alone_and_link(tmp_path: Path, inswapper_standin: Path) -> None:
    spec = replace(get_spec("inswapper_128"), sha256=(sha256(inswapper_standin.read_bytes()),))
    store = ModelStore(tmp_path / "cache", models={spec.name: spec})
    result = store.import_file(inswapper_standin, link=True)
    assert (result.name, result.known_hash) == ("inswapper_128", True)
    assert result.path.is_symlink() and result.path.resolve() == inswapper_standin.resolve()
    assert [v.status for v in store.verify()] == ["ok"]


def test_import_unknown_file_without_name_is_refused(tmp_path: Path, inswapper_standin: Path) -> None:
    with pytest.raises(UsageError, match="--name"):
        ModelStore(tmp_path / "cache").import_file(inswapper_standin, allow_unknown_hash=True)


@pytest.mark.parametrize(
    ("inputs", "outputs", "problem"),
    [
        ([("target", F32, [1, 3, 256, 256]), ("source", F32, [1, 512])], [("output", F32, [1, 3, 128, 128])],
         "input target has shape [1,3,256,256], expected [1,3,128,128]"),
        ([("target", F32, [1, 3, 128, 128]), ("latent", F32, [1, 512])], [("output", F32, [1, 3, 128, 128])],
         "no input named 'source'"),
        ([("target", TensorProto.FLOAT16, [1, 3, 128, 128]), ("source", F32, [1, 512])],
         [("output", F32, [1, 3, 128, 128])], "input target is float16, expected float32"),
        ([("target", F32, [1, 3, 128, 128])], [("output", F32, [1, 3, 128, 128])], "1 inputs where 2"),
    ],
)
def test_import_rejects_wrong_contract(tmp_path: Path, inputs: list, outputs: list, problem: str) -> None:
    bad = write_onnx(tmp_path / "bad.onnx", inputs, outputs)
    store = ModelStore(tmp_path / "cache")
    with pytest.raises(ModelError, match="does not fit inswapper_128's contract") as info:
        store.import_file(bad, "inswapper_128", allow_unknown_hash=True)
    assert problem in str(info.value)
    assert not (tmp_path / "cache" / "inswapper_128.onnx").exists()


def test_import_rejects_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01 not a model" * 100)
    with pytest.raises(ModelError, match="not a readable ONNX model"):
        ModelStore(tmp_path / "cache").import_file(junk, "inswapper_128", allow_unknown_hash=True)


def test_dynamic_dims_match_any_size(tmp_path: Path) -> None:
    det = write_onnx(tmp_path / "det.onnx", [("input.1", F32, [1, 3, "h", "w"])],
                     [(f"o{i}", F32, [1, "n", 1]) for i in range(9)])
    assert read_contract(det).inputs[0].shape == (1, 3, None, None)
    assert contract_problems(read_contract(det), get_spec("det_10g").contract) == []
    fixed = write_onnx(tmp_path / "det640.onnx", [("input.1", F32, [1, 3, 640, 640])],
                       [(f"o{i}", F32, [1, 12800, 1]) for i in range(9)])
    assert contract_problems(read_contract(fixed), get_spec("det_10g").contract) == []
    eight = write_onnx(tmp_path / "det8.onnx", [("input.1", F32, [1, 3, 640, 640])],
                       [(f"o{i}", F32, [1, 12800, 1]) for i in range(8)])
    assert contract_problems(read_contract(eight), get_spec("det_10g").contract) == [
        "8 outputs where 9 are expected"]


def test_licence_notice_shown_once_per_cache(tmp_path: Path) -> None:
    inswapper, gfpgan = get_spec("inswapper_128"), get_spec("gfpgan_1.4")
    notice = ModelStore(tmp_path).take_licence_notice(inswapper)
    assert notice is not None and "non-commercial" in notice and "inswapper_128" in notice
    assert ModelStore(tmp_path).take_licence_notice(inswapper) is None  # recorded on disk
    assert ModelStore(tmp_path / "other").take_licence_notice(inswapper) == notice
    assert licence_notice(gfpgan) is None and ModelStore(tmp_path).take_licence_notice(gfpgan) is None
    assert all(licence_notice(s) for s in MODELS.values() if not s.commercial_use)


def test_cache_folder_location(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASQUERADE_HOME", str(tmp_path / "home"))
    assert default_home() == tmp_path / "home"
    assert ModelStore().root == tmp_path / "home" / "models"
    assert ModelStore(tmp_path / "x").root == tmp_path / "x"
    monkeypatch.delenv("MASQUERADE_HOME")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert default_home() == tmp_path / "xdg" / "masquerade"
        monkeypatch.delenv("XDG_CACHE_HOME")
        assert default_home() == Path.home() / ".cache" / "masquerade"
    ModelStore()  # creating a store touches nothing
    assert not (tmp_path / "home").exists()
