"""int8 models: the recipe, the quality gate, and the cache of verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from masquerade.errors import ModelError
from masquerade.models import quantize, standins
from masquerade.models.quantize import CalibrationSet, int8_model, psnr_db
from masquerade.models.runtime import new_session


def _fp32_swapper(tmp_path: Path) -> Path:
    path = tmp_path / "inswapper_128.onnx"
    path.write_bytes(standins.to_bytes(standins.swapper(mode="conv")))
    return path


def _data(count: int = 6, seed: int = 0) -> CalibrationSet:
    rng = np.random.default_rng(seed)
    feeds = [{"target": rng.random((1, 3, 128, 128), np.float32),
              "source": rng.standard_normal((1, 512)).astype(np.float32)} for _ in range(count)]
    return CalibrationSet(feeds[:4], feeds[4:], "output", lambda raw: raw.transpose(0, 2, 3, 1) * 255.0)


def test_int8_model_quantises_the_convolutions_and_stays_close(tmp_path, capfd):
    fp32 = _fp32_swapper(tmp_path)
    result = int8_model(fp32, "ab" * 32, tmp_path / "int8", _data)
    assert result.made_now and result.path.is_file()
    graph = onnx.load(str(result.path)).graph
    convs = [n for n in graph.node if n.op_type == "Conv"]
    # first and last convolutions stay fp32: only the middle one is fed by DequantizeLinear
    fed_by_dq = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert [bool(set(c.input) & fed_by_dq) for c in convs] == [False, True, False]
    assert result.report.samples == 2 and 40.0 < result.report.psnr_db < 99.0
    assert result.report.worst_psnr_db <= result.report.psnr_db
    # the int8 file runs and agrees with the fp32 one within a few levels
    feeds = _data(seed=1).holdout[0]
    a = new_session(fp32).run(None, dict(feeds))[0]
    b = new_session(result.path).run(None, dict(feeds))[0]
    error = np.abs(a - b) * 255
    assert error.mean() < 2.5 and error.max() < 12  # on noise input, the hardest case
    assert capfd.readouterr() == ("", "")  # a library never prints, quantiser advice included


def test_a_cached_int8_model_is_not_made_again(tmp_path, monkeypatch):
    fp32 = _fp32_swapper(tmp_path)
    first = int8_model(fp32, "cd" * 32, tmp_path / "int8", _data)

    def fail(*args, **kwargs):
        raise AssertionError("quantised again")

    monkeypatch.setattr(quantize, "_quantize", fail)
    again = int8_model(fp32, "cd" * 32, tmp_path / "int8", fail)
    assert not again.made_now and again.path == first.path and again.report == first.report


def test_the_gate_refuses_a_model_that_strays_and_remembers_it(tmp_path, monkeypatch):
    fp32 = _fp32_swapper(tmp_path)
    with pytest.raises(ModelError, match=r"strays too far from fp32 \(.* dB PSNR .*; 120 dB needed\)"):
        int8_model(fp32, "ef" * 32, tmp_path / "int8", _data, min_psnr=120.0)
    assert not list((tmp_path / "int8").glob("*.onnx"))  # the rejected file is deleted
    reports = list((tmp_path / "int8").glob("*.json"))
    assert len(reports) == 1 and json.loads(reports[0].read_text())["report"]["samples"] == 2

    monkeypatch.setattr(quantize, "_quantize", lambda *a: pytest.fail("quantised again"))
    with pytest.raises(ModelError, match="strays too far"):
        int8_model(fp32, "ef" * 32, tmp_path / "int8", _data, min_psnr=120.0)


def test_a_new_model_file_or_recipe_gets_its_own_int8_file(tmp_path, monkeypatch):
    fp32 = _fp32_swapper(tmp_path)
    a = int8_model(fp32, "01" * 32, tmp_path / "int8", _data)
    b = int8_model(fp32, "02" * 32, tmp_path / "int8", _data)
    monkeypatch.setattr(quantize, "RECIPE_VERSION", quantize.RECIPE_VERSION + 1)
    c = int8_model(fp32, "01" * 32, tmp_path / "int8", _data)
    assert len({a.path, b.path, c.path}) == 3 and c.made_now


def test_psnr_is_capped_for_identical_pictures():
    picture = np.full((4, 4, 3), 100.0)
    assert psnr_db(picture, picture) == 99.0
    assert psnr_db(picture, picture + 1.0) == pytest.approx(48.13, abs=0.01)


def test_a_16_bit_model_is_refused_with_the_fp32_name(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["target"], ["output"])], "fp16",
                              [helper.make_tensor_value_info("target", TensorProto.FLOAT16, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT16, [1, 3, 8, 8])])
    path = tmp_path / "inswapper_128_fp16.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    with pytest.raises(ModelError, match="16-bit model; --precision int8 quantises fp32 files"):
        int8_model(path, "12" * 32, tmp_path / "int8", _data)


def test_an_unwritable_cache_is_a_one_line_model_error(tmp_path):
    fp32 = _fp32_swapper(tmp_path)
    blocker = tmp_path / "int8"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ModelError, match="could not write the int8 model in"):
        int8_model(fp32, "34" * 32, blocker, _data)


def test_a_changed_int8_file_is_made_again(tmp_path):
    fp32 = _fp32_swapper(tmp_path)
    first = int8_model(fp32, "56" * 32, tmp_path / "int8", _data)
    with first.path.open("ab") as file:
        file.write(b"tampered")
    again = int8_model(fp32, "56" * 32, tmp_path / "int8", _data)
    assert again.made_now and again.path == first.path
    untouched = int8_model(fp32, "56" * 32, tmp_path / "int8", _data)
    assert not untouched.made_now


def test_an_int8_file_replaced_with_its_size_and_mtime_kept_is_made_again(tmp_path):
    """The record's stamp proves nothing: the int8 file is hashed on every load and its session is built
    from the bytes hashed (``data``)."""
    import os

    fp32 = _fp32_swapper(tmp_path)
    first = int8_model(fp32, "78" * 32, tmp_path / "int8", _data)
    assert first.data == first.path.read_bytes()
    stat = first.path.stat()
    forged = bytearray(first.data)
    forged[-64:] = bytes(64)  # same size, other bytes
    first.path.write_bytes(bytes(forged))
    os.utime(first.path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = int8_model(fp32, "78" * 32, tmp_path / "int8", _data)
    assert again.made_now and again.data == first.data == again.path.read_bytes()


def test_the_fp32_model_is_quantised_from_the_bytes_the_caller_verified(tmp_path):
    fp32 = _fp32_swapper(tmp_path)
    verified = fp32.read_bytes()
    fp32.write_bytes(b"replaced after it was verified")
    result = int8_model(fp32, "9a" * 32, tmp_path / "int8", _data, fp32_data=verified)
    assert result.made_now and new_session(result.data).run(None, dict(_data().holdout[0]))
