"""`masquerade models ...` through its own register()/run(), on a temporary cache folder."""

from __future__ import annotations

import argparse
import re
from dataclasses import replace
from pathlib import Path

import pytest
from modelkit import FAST_RETRY, FileServer, sha256

import masquerade.cli.models_cmd as models_cmd
from masquerade.errors import ChecksumMismatch, ModelError, UsageError
from masquerade.models.manifest import MODELS, ModelSpec, get_spec
from masquerade.models.store import ModelStore


def _rows(out: str) -> dict[str, list[str]]:
    """`models list` table rows by model name (columns are separated by 2+ spaces)."""
    return {cells[0]: cells for cells in (re.split(r"\s{2,}", line) for line in out.splitlines())}


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="masquerade")
    models_cmd.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(list(argv))


def _use_registry(monkeypatch: pytest.MonkeyPatch, *specs: ModelSpec) -> None:
    registry = {**MODELS, **{s.name: s for s in specs}}
    monkeypatch.setattr(models_cmd, "ModelStore",
                        lambda root: ModelStore(root, retry=FAST_RETRY, models=registry))


def test_list_needs_no_network(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse("models", "--models-dir", str(tmp_path), "list")
    assert args.func is models_cmd.run
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for spec in MODELS.values():
        assert spec.name in out
    assert _rows(out)["inswapper_128"][:4] == ["inswapper_128", "swapper", "554 MB", "no"]
    assert _rows(out)["codeformer"][3] == "no (import only)"  # no pinned hash: not downloadable
    assert f"cache: {tmp_path}" in out


def test_download_then_list_and_verify(http_server: FileServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = b"fake inswapper" * 1000
    http_server.files["m.onnx"] = data
    spec = replace(get_spec("inswapper_128"), urls=(http_server.url("m.onnx"),), sha256=(sha256(data),),
                   size=len(data))
    _use_registry(monkeypatch, spec)
    args = _parse("models", "--models-dir", str(tmp_path), "download", "inswapper_128")
    assert models_cmd.run(args) == 0
    captured = capsys.readouterr()
    assert "inswapper_128: downloaded and verified" in captured.out
    assert "non-commercial" in captured.err  # licence notice before first use
    assert (tmp_path / "inswapper_128.onnx").read_bytes() == data
    models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "list"))
    assert _rows(capsys.readouterr().out)["inswapper_128"][:4] == ["inswapper_128", "swapper", "14 kB", "yes"]
    assert models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "verify")) == 0
    assert capsys.readouterr().out.strip() == "inswapper_128: ok"


def test_download_mismatch_is_an_error(http_server: FileServer, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    http_server.files["m.onnx"] = b"evil"
    spec = replace(get_spec("gfpgan_1.4"), urls=(http_server.url("m.onnx"),), size=None)
    _use_registry(monkeypatch, spec)
    with pytest.raises(ChecksumMismatch, match="deleted"):
        models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "download", "-q", "gfpgan_1.4"))
    assert not any(tmp_path.iterdir())


def test_download_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="known models"):
        models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "download", "nope"))


def test_import_with_flag_warns_and_verify_reports_it(
    tmp_path: Path, inswapper_standin: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = str(tmp_path / "cache")
    with pytest.raises(ChecksumMismatch, match="--allow-unknown-hash"):
        models_cmd.run(_parse("models", "--models-dir", cache, "import", str(inswapper_standin),
                              "--name", "inswapper_128"))
    assert models_cmd.run(_parse("models", "--models-dir", cache, "import", str(inswapper_standin),
                                 "--name", "inswapper_128", "--allow-unknown-hash")) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: ") and "not vouched for" in captured.err
    assert "inswapper_128: copied to" in captured.out
    assert models_cmd.run(_parse("models", "--models-dir", cache, "verify")) == 0
    assert "accepted at import with --allow-unknown-hash" in capsys.readouterr().out


def test_verify_fails_on_a_corrupt_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "det_10g.onnx").write_bytes(b"corrupt")
    with pytest.raises(ModelError, match="1 of 1 model file"):
        models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "verify"))
    assert "det_10g: CHECKSUM MISMATCH" in capsys.readouterr().out


def test_list_says_yes_only_for_a_file_whose_hash_is_pinned(tmp_path: Path, inswapper_standin: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    good = b"enhancer bytes"
    pinned = replace(get_spec("gfpgan_1.4"), sha256=(sha256(good),))
    _use_registry(monkeypatch, pinned)
    store = ModelStore(tmp_path)
    (tmp_path / pinned.file_name).write_bytes(good)
    store.import_file(inswapper_standin, "inswapper_128", allow_unknown_hash=True)
    (tmp_path / "w600k_r50.onnx").write_bytes(b"someone else's file")
    assert models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "list")) == 0
    captured = capsys.readouterr()
    rows = _rows(captured.out)
    assert rows["gfpgan_1.4"][3] == "yes"
    assert rows["inswapper_128"][3].startswith("unverified")
    assert rows["w600k_r50"][3].startswith("TAMPERED")
    assert "w600k_r50" in captured.err and "models download w600k_r50" in captured.err
    # A file swapped in behind the accepted one is tampered, not unverified.
    store.path(get_spec("inswapper_128")).write_bytes(b"swapped in later")
    models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "list"))
    assert _rows(capsys.readouterr().out)["inswapper_128"][3].startswith("TAMPERED")


def test_download_tries_every_model_and_reports_all_failures(
    http_server: FileServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = b"good model bytes"
    http_server.files["good.onnx"] = good
    specs = [replace(get_spec("det_10g"), urls=(http_server.url("gone.onnx"),), archive=None),
             replace(get_spec("gfpgan_1.4"), urls=(http_server.url("good.onnx"),), sha256=(sha256(good),),
                     size=len(good)),
             replace(get_spec("w600k_r50"), urls=(http_server.url("missing.onnx"),), archive=None)]
    _use_registry(monkeypatch, *specs)
    with pytest.raises(ModelError, match=r"2 of 3 models could not be downloaded \(det_10g, w600k_r50;"):
        models_cmd.run(_parse("models", "--models-dir", str(tmp_path), "download", "-q",
                              "det_10g", "gfpgan_1.4", "w600k_r50"))
    assert (tmp_path / "gfpgan_1.4.onnx").read_bytes() == good  # the one in the middle was not skipped
    captured = capsys.readouterr()
    assert "gfpgan_1.4: downloaded and verified" in captured.out
    assert "det_10g: FAILED: " in captured.err and "w600k_r50: FAILED: " in captured.err
    assert captured.err.count("HTTP 404") == 2


def test_codeformer_hints_lead_to_a_command_that_works(tmp_path: Path) -> None:
    from modelkit import write_onnx
    from onnx import TensorProto

    from masquerade.models.store import ModelStore

    cache = tmp_path / "cache"
    store = ModelStore(cache)
    missing = store.missing_message([get_spec("codeformer")])
    command = "masquerade models import --name codeformer --allow-unknown-hash FILE"
    assert command in missing
    with pytest.raises(ModelError) as refused:
        store.download(get_spec("codeformer"))
    assert command in str(refused.value)
    standin = write_onnx(tmp_path / "codeformer.onnx",
                         [("input", TensorProto.FLOAT, [1, 3, 512, 512]),
                          ("weight", TensorProto.DOUBLE, [1])],
                         [("output", TensorProto.FLOAT, [1, 3, 512, 512])])
    # Without --name, the file name is recognised and the exact command is suggested.
    with pytest.raises(UsageError, match=re.escape(command.replace("FILE", str(standin)))):
        models_cmd.run(_parse("models", "--models-dir", str(cache), "import", str(standin)))
    argv = [*command.split()[1:-1], str(standin)]  # the suggested command, word for word
    argv.insert(1, "--models-dir")
    argv.insert(2, str(cache))
    assert models_cmd.run(_parse(*argv)) == 0
    assert store.is_installed(get_spec("codeformer"))
