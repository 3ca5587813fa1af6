"""A PyTorch session with ONNX Runtime's call shape, for ``--execution-provider torch-cuda``.

``TorchSession(path).run(output_names, feeds)`` answers like ``onnxruntime.InferenceSession.run``
(numpy in, numpy out), so the stages take either. It also offers:

- ``run_batch``: feeds of any batch size, in chunks, even when the file pins batch 1;
- ``run_torch``: tensors already on the device in, tensors out (no host round trip), for the GPU
  crop / paste path of :mod:`masquerade._backends.torch_warp`.

Precision (``dtype``): ``"auto"`` keeps the graph's own dtypes (fp32 files run fp32, the fp16 file
fp16); ``"fp32"``, ``"fp16"`` or ``"bf16"`` compute every float in that dtype. 4-D tensors run
channels_last by default. ``compile`` (torch.compile) and ``cuda_graphs`` (torch.compile's
"reduce-overhead" mode, which replays CUDA graphs) are off by default.

There is never a silent fallback: a missing PyTorch, a CPU-only PyTorch asked for CUDA, or a GPU
without bf16 raises :class:`~masquerade.errors.ProviderUnavailable`.

Batches: the converter makes every graph's batch dynamic, but a graph may mix the items of a batch
(a ``ReduceMean(keepdims=1)`` over all axes broadcasts one batch-1 tensor to every item) or fail on
any batch above 1. :meth:`TorchSession.check_batching` runs a batch of 2 against two batches of 1 at
load; a graph that differs or fails then runs one item per call (``max_batch = 1``), correct but
unbatched, and ``batch_notice`` says so once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from masquerade.errors import ModelError, ProviderUnavailable, UsageError

if TYPE_CHECKING:
    import onnx
    import torch

INSTALL_HINT = (
    "pip install '.[gpu]' in masquerade's checkout (PyTorch with CUDA: see pytorch.org for the wheel "
    "matching your driver)"
)
DTYPES = ("auto", "fp32", "fp16", "bf16")

_ONNX_TYPE_NAMES = {1: "tensor(float)", 10: "tensor(float16)", 16: "tensor(bfloat16)", 11: "tensor(double)",
                    7: "tensor(int64)", 6: "tensor(int32)", 9: "tensor(bool)", 2: "tensor(uint8)"}


@dataclass(frozen=True)
class IOInfo:
    """What ``InferenceSession.get_inputs()`` / ``get_outputs()`` items offer: name, shape, type.

    The batch dimension is reported as the symbol ``"N"``: this session takes any batch.
    """

    name: str
    shape: list[int | str | None]
    type: str


def import_torch(provider: str = "torch-cuda") -> Any:
    """The torch module, or ProviderUnavailable naming ``provider`` and saying what to install."""
    try:
        import torch
    except ImportError:
        raise ProviderUnavailable(f"execution provider {provider!r} needs PyTorch, which is not installed; "
                                  f"{INSTALL_HINT}") from None
    return torch


def check_device(device: str, dtype: str = "auto", provider: str | None = None) -> None:
    """Raise ProviderUnavailable unless ``device`` ("cuda", "cuda:1", "cpu") can run ``dtype``;
    messages name ``provider`` (default: the one that runs on ``device``)."""
    torch = import_torch(provider or ("torch-cpu" if device == "cpu" else "torch-cuda"))
    if dtype not in DTYPES:
        raise UsageError(f"unknown torch dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            cuda = torch.version.cuda
            build = "a CPU-only build" if cuda is None else f"CUDA {cuda}, no usable GPU"
            raise ProviderUnavailable(f"execution provider 'torch-cuda' needs an NVIDIA GPU, but PyTorch "
                                      f"{torch.__version__} ({build}) sees none; {INSTALL_HINT}")
        if dtype == "bf16" and not torch.cuda.is_bf16_supported():
            raise ProviderUnavailable("this GPU has no bfloat16 support; use the fp16 or fp32 torch dtype")
    elif device != "cpu":
        raise UsageError(f"unknown torch device {device!r}; use 'cuda' or 'cpu'")


class TorchSession:
    """An ONNX model converted to PyTorch, run on ``device`` with ONNX Runtime's ``run`` interface."""

    def __init__(
        self,
        model: str | Path | bytes | onnx.ModelProto,
        device: str = "cuda",
        dtype: str = "auto",
        channels_last: bool = True,
        compile: bool = False,
        cuda_graphs: bool = False,
    ) -> None:
        check_device(device, dtype)
        torch = import_torch()
        from masquerade._backends.onnx_to_torch import convert, load_model

        proto = load_model(model)
        self._model_path = str(model) if isinstance(model, (str, Path)) else None  # as ORT's, for the emap
        self.device = torch.device(device)
        self.float_dtype = {"auto": None, "fp32": torch.float32, "fp16": torch.float16,
                            "bf16": torch.bfloat16}[dtype]
        self.channels_last = channels_last
        module = convert(proto, float_dtype=self.float_dtype).eval().to(self.device)
        if channels_last:
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self._inputs = [_io_info(v) for v in proto.graph.input if v.name in module.input_names]
        self._outputs = [_io_info(v) for v in proto.graph.output]
        self._input_dtypes = {v.name: _torch_dtype(v) for v in proto.graph.input}
        self._input_shapes = {v.name: _dims(v) for v in proto.graph.input}
        self.max_batch: int | None = None
        """Items per model call (None: any); 1 for a graph whose batches are not item by item."""
        self.batch_notice: str | None = None
        """Set by :meth:`check_batching` when the graph runs one item at a time."""
        self._forward: Any = module
        if compile or cuda_graphs:
            mode = "reduce-overhead" if cuda_graphs else "default"  # reduce-overhead = CUDA graph replays
            self._forward = torch.compile(module, mode=mode, dynamic=True)

    # -- ONNX Runtime's surface ----------------------------------------------------------------
    def get_inputs(self) -> list[IOInfo]:
        return list(self._inputs)

    def get_outputs(self) -> list[IOInfo]:
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        return [f"torch-{self.device.type}"]

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, NDArray]) -> list[NDArray]:
        """Outputs (numpy, float outputs as float32 when a dtype is forced) for numpy ``feeds``."""
        torch = import_torch()
        tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in feeds.items()}
        outs = self.run_torch(tensors, output_names)
        return [_to_numpy(out) for out in outs]

    # -- batches and device-resident tensors ---------------------------------------------------
    def run_batch(
        self,
        feeds: Mapping[str, NDArray],
        output_names: Sequence[str] | None = None,
        max_batch: int | None = None,
    ) -> list[NDArray]:
        """``run`` over feeds sharing a leading batch N, ``max_batch`` items per call (None: all at once).

        Outputs are concatenated along axis 0. A graph that flattens the batch into rows (SCRFD's
        [rows, C] heads) returns N times the rows, item after item.
        """
        sizes = {len(v) for v in feeds.values()}
        if len(sizes) != 1:
            raise UsageError(f"run_batch feeds must share their batch size, got {sorted(sizes)}")
        total = sizes.pop()
        step = max_batch or max(total, 1)
        if step < 1:
            raise UsageError(f"max_batch must be at least 1, got {max_batch}")
        parts = [self.run(output_names, {k: v[i : i + step] for k, v in feeds.items()})
                 for i in range(0, total, step)]
        if not parts:
            raise UsageError("run_batch needs at least one item")
        return [np.concatenate([p[j] for p in parts]) for j in range(len(parts[0]))]

    def run_torch(
        self, feeds: Mapping[str, torch.Tensor], output_names: Sequence[str] | None = None
    ) -> list[torch.Tensor]:
        """Device tensors out for tensors in (on any device; moved and cast here, no host copy if on it)."""
        torch = import_torch()
        missing = [name for name in self.module.input_names if name not in feeds]
        if missing:
            raise UsageError(f"missing model input(s) {', '.join(missing)}")
        args = [self._prepare(name, feeds[name], torch) for name in self.module.input_names]
        try:
            with torch.inference_mode():
                outs = self._call(args, torch)
        except NotImplementedError as error:
            raise ModelError(f"the PyTorch backend cannot run this model: {error}") from None
        except RuntimeError as error:  # shape errors: typically a graph whose batch cannot vary
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"PyTorch could not run the model on inputs of shape "
                             f"{[tuple(a.shape) for a in args]}: {first}") from None
        names = list(output_names) if output_names else self.module.output_names
        index = {name: i for i, name in enumerate(self.module.output_names)}
        unknown = [n for n in names if n not in index]
        if unknown:
            raise UsageError(f"unknown model output(s) {', '.join(unknown)}")
        return [outs[index[n]] for n in names]

    def _call(self, args: list[torch.Tensor], torch: Any) -> Sequence[torch.Tensor]:
        """The module on ``args``, in chunks of ``max_batch`` items when the graph needs it."""
        sizes = {a.shape[0] if a.dim() else 1 for a in args}
        total = sizes.pop() if len(sizes) == 1 else 1
        step = self.max_batch
        if step is None or total <= step:
            return self._forward(*args)
        parts = [self._forward(*(a[i : i + step] for a in args)) for i in range(0, total, step)]
        return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]

    def check_batching(self, name: str = "the model", seed: int = 0) -> bool:
        """Run a batch of 2 against 2 batches of 1 on random inputs; True when they agree.

        When they differ, or the batch of 2 fails, the session runs one item per call from now on and
        ``batch_notice`` says why. Graphs with inputs of unknown size (detectors) are not checked: they
        run one frame at a time anyway. A graph that fails at batch 1 raises ModelError.
        """
        torch = import_torch()
        shapes = [self._input_shapes.get(n) for n in self.module.input_names]
        if not shapes or any(s is None or not all(isinstance(d, int) and d > 0 for d in s) for s in shapes):
            return True
        generator = torch.Generator().manual_seed(seed)
        pairs = {n: torch.randn((2, *s), generator=generator) for n, s in zip(self.module.input_names, shapes,
                                                                            strict=True)}
        singles = [self.run_torch({n: v[i : i + 1] for n, v in pairs.items()}) for i in range(2)]
        reason = None
        try:
            both = self.run_torch(pairs)
        except ModelError as error:
            reason = f"it fails on a batch of 2 ({error})"
        else:
            for out, one, two in zip(both, *singles, strict=True):
                # fp32 on the CPU repeats to rounding; 16-bit floats and GPU kernels chosen per batch
                # size (TF32 convolutions) differ by a percent at most. Mixed items differ by the whole.
                exact = self.device.type == "cpu" and out.dtype == torch.float32
                tolerance = 1e-3 if exact else 2e-2
                expected = torch.cat([one, two]).float()
                error = float((out.float() - expected).abs().max()) if out.shape == expected.shape else 1e30
                if error > tolerance * (float(expected.abs().max()) or 1.0):
                    reason = "a batch of 2 does not give what two batches of 1 give (the graph mixes items)"
                    break
        if reason is None:
            return True
        self.max_batch = 1
        self.batch_notice = (f"{name}: on the PyTorch backend {reason}, so it runs one face per call "
                             "(correct, but without the speed of batches)")
        return False

    def _prepare(self, name: str, value: torch.Tensor, torch: Any) -> torch.Tensor:
        dtype = self._input_dtypes.get(name)
        if value.is_floating_point() and self.float_dtype is not None:
            dtype = self.float_dtype
        tensor = value.to(self.device, dtype=dtype or value.dtype, non_blocking=True)
        if self.channels_last and tensor.dim() == 4:
            tensor = tensor.contiguous(memory_format=torch.channels_last)
        return tensor


def _to_numpy(tensor: torch.Tensor) -> NDArray:
    import torch

    if tensor.is_floating_point() and tensor.dtype != torch.float64:
        tensor = tensor.float()  # bf16 has no numpy type; fp16 callers upcast anyway
    return tensor.detach().cpu().contiguous().numpy()


def _io_info(value: Any) -> IOInfo:
    dims: list[int | str | None] = []
    for i, d in enumerate(value.type.tensor_type.shape.dim):
        if i == 0:
            dims.append("N")  # the converter makes the batch dynamic whatever the file says
        else:
            dims.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return IOInfo(value.name, dims, _ONNX_TYPE_NAMES.get(value.type.tensor_type.elem_type, "tensor(unknown)"))


def _dims(value: Any) -> list[int | None] | None:
    """The non-batch dims of a graph input (None for one without a shape; unknown dims as None)."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in list(tensor.shape.dim)[1:]]


def _torch_dtype(value: Any) -> torch.dtype | None:
    from masquerade._backends.torch_ops import ONNX_TO_TORCH_DTYPE

    return ONNX_TO_TORCH_DTYPE.get(value.type.tensor_type.elem_type)


def new_torch_session(
    model: Path | bytes, provider: str = "torch-cuda", dtype: str = "auto", compile: bool = False,
    name: str | None = None,
) -> TorchSession:
    """The session for the ``torch-cuda`` (GPU) or ``torch-cpu`` provider of ``model`` (bytes as the model
    store verified them, or a path), its batching checked (see :meth:`TorchSession.check_batching`)."""
    devices = {"torch-cuda": "cuda", "torch-cpu": "cpu"}
    if provider not in devices:
        raise UsageError(f"unknown PyTorch provider {provider!r}; use torch-cuda or torch-cpu")
    if not isinstance(model, bytes) and not Path(model).is_file():
        raise ModelError(f"model file {model} does not exist")
    session = TorchSession(model, device=devices[provider], dtype=dtype, compile=compile)
    session.check_batching(name or (Path(model).name if not isinstance(model, bytes) else "the model"))
    return session
