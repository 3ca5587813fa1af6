"""Session factory: provider lists by equality, provider errors, a real CPU session on a stand-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import masquerade.models.runtime as runtime
from masquerade.errors import ModelError, ProviderUnavailable, UsageError
from masquerade.models.runtime import check_provider, new_session, provider_list, provider_options


def test_provider_lists() -> None:
    assert provider_list("cpu") == ["CPUExecutionProvider"]
    assert provider_list("cuda") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("tensorrt") == [
        "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("coreml") == ["CoreMLExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("directml") == ["DmlExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("rocm") == ["ROCMExecutionProvider", "CPUExecutionProvider"]
    assert provider_list("openvino") == ["OpenVINOExecutionProvider", "CPUExecutionProvider"]
    with pytest.raises(UsageError, match="choose from cpu, cuda, tensorrt"):
        provider_list("CUDAExecutionProvider")


def test_provider_options() -> None:
    assert provider_options("cuda") == [{}, {}]
    assert provider_options("tensorrt", Path("/c"))[0]["trt_engine_cache_path"] == "/c"
    assert provider_options("tensorrt", Path("/c"))[1:] == [{}, {}]


def test_missing_provider_lists_available_and_package() -> None:
    with pytest.raises(ProviderUnavailable) as info:
        check_provider("cuda", available=["cpu", "openvino"])
    assert str(info.value) == (
        "execution provider 'cuda' is not in the installed onnxruntime (available: cpu, openvino); "
        "install onnxruntime-gpu (with CUDA 12 and cuDNN 9) in place of onnxruntime")
    check_provider("openvino", available=["cpu", "openvino"])


def test_session_on_cpu_runs(inswapper_standin: Path) -> None:
    session = new_session(inswapper_standin, "cpu", threads=1)
    assert session.get_providers() == ["CPUExecutionProvider"]
    target = np.random.default_rng(0).random((1, 3, 128, 128), dtype=np.float32)
    [out] = session.run(None, {"target": target, "source": np.zeros((1, 512), np.float32)})
    np.testing.assert_array_equal(out, target)


def test_absent_provider_never_falls_back(inswapper_standin: Path) -> None:
    absent = next(p for p in runtime.PROVIDER_NAMES if p not in runtime.available_providers())
    with pytest.raises(ProviderUnavailable, match=f"'{absent}' is not in the installed onnxruntime"):
        new_session(inswapper_standin, absent)


def test_provider_silently_dropped_by_ort_is_an_error(
    inswapper_standin: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Simulate an onnxruntime that lists CUDA but cannot start it (e.g. cuDNN missing): ORT then
    # builds the session on CPU only. The factory must refuse it.
    monkeypatch.setattr(runtime, "available_providers", lambda: ["cpu", "cuda"])
    real = ort.InferenceSession

    def cpu_only(path: str, sess_options: object = None, providers: object = None, **kw: object) -> object:
        assert providers == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(ort, "InferenceSession", cpu_only)
    with pytest.raises(ProviderUnavailable, match="offers 'cuda' but could not start it"):
        new_session(inswapper_standin, "cuda")


def test_bad_files_and_threads(tmp_path: Path, inswapper_standin: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        new_session(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match=r"could not load junk\.onnx on cpu"):
        new_session(junk)
    with pytest.raises(UsageError, match="at least 1"):
        new_session(inswapper_standin, threads=0)


def test_a_session_from_bytes_does_not_keep_a_second_copy(inswapper_standin):
    data = inswapper_standin.read_bytes()
    session = new_session(data, "cpu", threads=1, name="inswapper_128.onnx")
    assert [i.name for i in session.get_inputs()] == ["target", "source"]
    assert getattr(session, "_model_bytes", None) is None  # ORT would keep the bytes for the run
    with pytest.raises(ModelError, match=r"could not load inswapper_128\.onnx"):
        new_session(data[:100], "cpu", name="inswapper_128.onnx")
