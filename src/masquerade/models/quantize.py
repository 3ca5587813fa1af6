"""int8 versions of fp32 ONNX models for the CPU, made once on the user's machine and kept only if
their pictures stay close to the original's.

The recipe is ONNX Runtime's static quantisation in QDQ form: int8 per-channel weights and uint8
activations for the Conv layers, except the first and the last (they see the widest value ranges and
set the picture's colours), which stay fp32. ONNX Runtime fuses each QDQ pair into an integer
convolution; with AVX-512 VNNI or AVX-VNNI that runs the architecture-faithful inswapper stand-in
about 3.5x faster than fp32.

Static quantisation needs activation ranges, so the fp32 model runs on calibration inputs first (the
bundled public-domain faces, prepared by the stage exactly as in a run). A quality gate then runs
fp32 and int8 on held-out inputs and compares their pictures: the int8 file is used only if the mean
PSNR reaches ``min_psnr``. The figures are kept beside the file, keyed by the fp32 file's SHA-256 and
the recipe version, with the int8 file's own SHA-256: an accepted model loads at once next time (and
is made again if the file changed), and a rejected one is not quantised again on every run (its
int8 file is deleted).

Like the model store, this never hands a file to ONNX Runtime unhashed: the fp32 model comes in as the
bytes the store verified, and the int8 file is read once, hashed against its record and loaded from
those same bytes (:attr:`QuantizedModel.data`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from masquerade.errors import ModelError

RECIPE_VERSION = 1
"""Bump when the recipe changes: cached int8 files of an older recipe are then remade."""
MIN_PSNR_DB = 30.0
"""Mean PSNR (dB) between the int8 and fp32 pictures on the held-out inputs that an int8 file needs."""
_PSNR_CAP_DB = 99.0
"""The PSNR recorded for identical pictures (keeps the report finite JSON)."""

Feeds = Mapping[str, NDArray[Any]]


@dataclass(frozen=True)
class CalibrationSet:
    """Model inputs to quantise and judge a model with, and how to read its output as a picture."""

    calibration: Sequence[Feeds]
    """Inputs whose activation ranges set the int8 scales."""
    holdout: Sequence[Feeds]
    """Different inputs on which fp32 and int8 outputs are compared."""
    output: str
    """Name of the graph output that is the picture."""
    to_pixels: Callable[[NDArray[np.float32]], NDArray[np.float32]]
    """Raw output -> picture in 0..255 (float), as the stage pastes it."""


@dataclass(frozen=True)
class GateReport:
    """How the int8 model compared with fp32 on the held-out inputs, on this machine."""

    psnr_db: float
    """Mean PSNR of the int8 pictures against the fp32 ones."""
    worst_psnr_db: float
    """The lowest single PSNR."""
    speedup: float
    """fp32 time / int8 time over the held-out inputs (same threads)."""
    samples: int

    def summary(self) -> str:
        return (f"{self.psnr_db:.1f} dB PSNR from fp32 on average (worst {self.worst_psnr_db:.1f} dB) over "
                f"{self.samples} held-out faces, {self.speedup:.1f}x as fast")


@dataclass(frozen=True)
class QuantizedModel:
    path: Path
    report: GateReport
    made_now: bool
    """True when this call quantised the model; False when the cached file was used."""
    data: bytes = field(repr=False, default=b"")
    """The int8 file's bytes, hashed against its record: build the session from these."""


def int8_model(
    fp32_path: Path,
    digest: str,
    cache_dir: Path,
    calibrate: Callable[[], CalibrationSet],
    threads: int | None = None,
    min_psnr: float = MIN_PSNR_DB,
    on_start: Callable[[], None] | None = None,
    *,
    fp32_data: bytes | None = None,
) -> QuantizedModel:
    """The gated int8 version of the fp32 model at ``fp32_path`` (SHA-256 ``digest``), made if needed.

    ``fp32_data`` is the fp32 file's bytes as the caller verified them (a run passes the model store's);
    without it the file is read here. ``calibrate`` is called (and ``on_start`` first) only when the
    model has to be made. Raises ModelError, naming the figures, when the int8 model's pictures fall
    below ``min_psnr``.
    """
    from masquerade.models.store import read_hashed

    stem = f"{fp32_path.stem}.int8-{digest[:16]}-r{RECIPE_VERSION}"
    path, record_path = cache_dir / f"{stem}.onnx", cache_dir / f"{stem}.json"
    report, stamp = _read_record(record_path)
    data = b""
    if report is not None and report.psnr_db >= min_psnr and stamp and path.is_file():
        data, sha = read_hashed(path)
        if sha != stamp.get("sha256"):
            data = b""  # not the file that passed the gate: make it again
    made_now = False
    if report is None or (report.psnr_db >= min_psnr and not data):
        if on_start is not None:
            on_start()
        calibration = calibrate()
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            fp32 = fp32_data if fp32_data is not None else read_hashed(fp32_path)[0]
            _quantize(fp32, fp32_path.name, path, calibration.calibration)
            data, sha = read_hashed(path)
            report = _gate(fp32, data, calibration, threads)
            _write_record(record_path, report, sha)
        except OSError as error:
            reason = error.strerror or error
            raise ModelError(f"could not write the int8 model in {cache_dir}: {reason}") from None
        made_now = True
    if report.psnr_db < min_psnr:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        raise ModelError(
            f"the int8 version of {fp32_path.name} strays too far from fp32 ({report.summary()}; "
            f"{min_psnr:.0f} dB needed); run without --precision int8"
        )
    return QuantizedModel(path, report, made_now, data)


def _read_record(path: Path) -> tuple[GateReport | None, dict[str, Any] | None]:
    """The gate's figures and the int8 file's stamp (its SHA-256) kept beside it."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        return GateReport(**record["report"]), record.get("file")
    except (OSError, ValueError, TypeError, KeyError):
        return None, None


def _write_record(path: Path, report: GateReport, sha256: str) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"report": asdict(report), "file": {"sha256": sha256}}, indent=1),
                   encoding="utf-8")
    os.replace(tmp, path)


def psnr_db(a: NDArray[np.floating], b: NDArray[np.floating]) -> float:
    """PSNR of two 0..255 pictures, capped for identical ones."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return _PSNR_CAP_DB if mse <= 0.0 else min(10.0 * np.log10(255.0**2 / mse), _PSNR_CAP_DB)


def _quantize(fp32: bytes, fp32_name: str, out_path: Path, calibration: Sequence[Feeds]) -> None:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if not calibration:
        raise ModelError("int8 quantisation needs calibration inputs")
    model = onnx.load_from_string(fp32)
    half = (onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16)
    if any(i.type.tensor_type.elem_type in half for i in model.graph.input):
        raise ModelError(f"{fp32_name} is a 16-bit model; --precision int8 quantises fp32 files "
                         f"(e.g. inswapper_128, not inswapper_128_fp16)")
    for index, node in enumerate(model.graph.node):  # exclusions are by name; exported graphs may lack them
        node.name = node.name or f"{node.op_type}_{index}"
    convs = [node.name for node in model.graph.node if node.op_type == "Conv"]
    if not convs:
        raise ModelError(f"{fp32_name} has no convolutions to quantise")

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds = iter(calibration)

        def get_next(self) -> dict[str, NDArray[Any]] | None:
            return dict(next(self._feeds, None) or {}) or None

    # quantize_static reads and writes files: it gets the verified model, written into a private
    # (0700) temporary folder, and its output is hashed when it is read back.
    with _quiet_onnxruntime(), tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".quantize-") as tmp:
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        del model
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(named), str(quantized), Reader(),
            quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"], nodes_to_exclude=[convs[0], convs[-1]] if len(convs) > 2 else [],
        )
        os.replace(quantized, out_path)


def _gate(fp32: bytes, int8: bytes, data: CalibrationSet, threads: int | None) -> GateReport:
    from masquerade.models.runtime import new_session

    if not data.holdout:
        raise ModelError("the int8 quality gate needs held-out inputs")
    reference, quantized = new_session(fp32, "cpu", threads), new_session(int8, "cpu", threads)
    scores, seconds = [], [0.0, 0.0]
    for feeds in data.holdout:
        pictures = []
        for i, session in enumerate((reference, quantized)):
            started = time.perf_counter()
            raw = session.run([data.output], dict(feeds))[0]
            seconds[i] += time.perf_counter() - started
            pictures.append(data.to_pixels(np.asarray(raw, np.float32)))
        scores.append(psnr_db(*pictures))
    return GateReport(psnr_db=round(float(np.mean(scores)), 2), worst_psnr_db=round(float(min(scores)), 2),
                      speedup=round(seconds[0] / max(seconds[1], 1e-9), 2), samples=len(scores))


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """ONNX Runtime's quantiser logs advice through the root logger and its C++ sessions warn on stderr;
    a library must not print. Python logging is held to errors while it works; ONNX Runtime's default
    level is set to errors for good (masquerade's own sessions use that level anyway)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)
