"""The one factory for ONNX Runtime sessions, with explicit providers and never a silent CPU fallback."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from masquerade.errors import ModelError, ProviderUnavailable, UsageError

if TYPE_CHECKING:
    import onnxruntime as ort

PROVIDER_NAMES: dict[str, str] = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
"""Our short names -> ONNX Runtime execution provider names."""

PROVIDER_PACKAGES: dict[str, str] = {
    "cpu": "onnxruntime",
    "cuda": "onnxruntime-gpu (with CUDA 12 and cuDNN 9)",
    "tensorrt": "onnxruntime-gpu (with TensorRT, CUDA and cuDNN)",
    "coreml": "onnxruntime (the macOS build)",
    "directml": "onnxruntime-directml (Windows)",
    "rocm": "onnxruntime-rocm (AMD's ROCm build)",
    "openvino": "onnxruntime-openvino",
}
"""Which pip package brings each provider (install only one onnxruntime package at a time)."""


def _short_name(provider: str) -> str:
    if provider not in PROVIDER_NAMES:
        raise UsageError(f"unknown execution provider {provider!r}; choose from {', '.join(PROVIDER_NAMES)}")
    return provider


def provider_list(provider: str) -> list[str]:
    """The ONNX Runtime provider list for ``provider``, most preferred first.

    Accelerators keep CPU last so that graph nodes the accelerator cannot run are placed on the CPU
    (ORT partitions a graph across providers); the provider itself is still required by new_session.
    TensorRT keeps CUDA for nodes TensorRT rejects.
    """
    name = PROVIDER_NAMES[_short_name(provider)]
    if provider == "cpu":
        return [name]
    if provider == "tensorrt":
        return [name, PROVIDER_NAMES["cuda"], PROVIDER_NAMES["cpu"]]
    return [name, PROVIDER_NAMES["cpu"]]


def provider_options(provider: str, cache_dir: Path | None = None) -> list[dict[str, str]]:
    """Options parallel to :func:`provider_list` (TensorRT engines are cached in ``cache_dir``)."""
    options: list[dict[str, str]] = [{} for _ in provider_list(provider)]
    if provider == "tensorrt" and cache_dir is not None:
        options[0] = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache_dir),
                      "trt_timing_cache_enable": "True", "trt_timing_cache_path": str(cache_dir)}
    return options


def available_providers() -> list[str]:
    """Our short names of the providers the installed onnxruntime offers."""
    import onnxruntime as ort

    installed = set(ort.get_available_providers())
    return [short for short, name in PROVIDER_NAMES.items() if name in installed]


def check_provider(provider: str, available: Sequence[str] | None = None) -> None:
    """Raise ProviderUnavailable (listing what is available and the package to install) if missing."""
    _short_name(provider)
    have = list(available) if available is not None else available_providers()
    if provider not in have:
        raise ProviderUnavailable(
            f"execution provider {provider!r} is not in the installed onnxruntime (available: "
            f"{', '.join(have) or 'none'}); install {PROVIDER_PACKAGES[provider]} in place of onnxruntime"
        )


def new_session(
    model: Path | bytes,
    provider: str = "cpu",
    threads: int | None = None,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> ort.InferenceSession:
    """An ONNX Runtime session of ``model`` that really runs on ``provider``.

    ``model`` is the model's bytes (as :meth:`masquerade.models.store.ModelStore.load` read and hashed
    them: what is hashed is what runs) or, for files masquerade made itself, a path. ``name`` names it
    in errors. ``threads`` sets the intra-op thread count (None: the runtime's default). The caller
    keeps and reuses the session; nothing is cached here.
    """
    import onnxruntime as ort

    label = name or (Path(model).name if not isinstance(model, bytes) else "the model")
    check_provider(provider)
    if threads is not None and threads < 1:
        raise UsageError(f"--execution-threads must be at least 1, got {threads}")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: ORT's warnings are noise for users
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    wanted = PROVIDER_NAMES[provider]
    try:
        session = ort.InferenceSession(
            model if isinstance(model, bytes) else str(model), sess_options=options,
            providers=provider_list(provider), provider_options=provider_options(provider, cache_dir),
        )
    except Exception as error:  # ORT raises its own Fail/InvalidGraph/NoSuchFile types and RuntimeError
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if not isinstance(model, bytes) and not Path(model).is_file():
            raise ModelError(f"model file {model} does not exist") from None
        raise ModelError(f"onnxruntime could not load {label} on {provider}: {message}") from None
    # ORT keeps the bytes it was given for a session reset we never ask for (its own TODO says so):
    # let them go, or a 550 MB model would stay twice in memory for the whole run.
    if getattr(session, "_model_bytes", None) is not None:
        session._model_bytes = None
    # ORT drops a provider whose libraries fail to load (e.g. CUDA without cuDNN) and carries on.
    active: list[Any] = session.get_providers()
    if wanted not in active:
        raise ProviderUnavailable(
            f"onnxruntime offers {provider!r} but could not start it for {label} (it ran on "
            f"{', '.join(active)}); check the drivers and libraries that {PROVIDER_PACKAGES[provider]} needs"
        )
    return session
