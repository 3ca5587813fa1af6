"""``masquerade bench``: one table, every row measured in this run on this machine.

Rows: the codec-only ceiling (decode + encode, no processing); the embedded default as a sequential
roop-style baseline and through masquerade's engine; the neural path (SCRFD + ArcFace + inswapper,
optionally a GFPGAN enhancer) the same two ways; each model alone; paste-back alone. Each row runs
in a fresh process (spawn), so its peak RSS is its own. Models come from the cache when installed,
else from architecture-faithful random-weight stand-ins (``models/standins_arch.py``), which cost the
same to run but mean nothing; every row says which it used.

The library returns rows and never prints; ``format_table`` makes the text the CLI prints.
"""

from __future__ import annotations

import os
import platform
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from masquerade.bench import jobs
from masquerade.bench.clips import examples_photo, parse_size, write_clip

NEURAL_MODELS = ("det_10g", "w600k_r50", "inswapper_128")
ENHANCER_MODEL = "gfpgan_1.4"
CLIP_FPS = 25


@dataclass(frozen=True)
class BenchOptions:
    seconds: float = 4.0
    """Length of the embedded-path clips."""
    sizes: tuple[str, ...] = ("720p", "1080p")
    faces: tuple[int, ...] = (1, 4)
    neural: bool = True
    neural_frames: int = 4
    """Frames of the neural rows (the stand-ins take seconds per face on a CPU)."""
    enhancer: bool = False
    int8: bool = True
    """Also run the neural engine and the swapper alone with ``--precision int8`` models."""
    memory_check: bool = False
    """Also run the embedded engine on 10 s and 60 s 720p clips and compare peak RSS."""
    models: bool = True
    """Rows for each model alone and for paste-back alone."""
    model_runs: int = 3
    threads: int | None = None
    """ONNX Runtime intra-op threads (None: its default)."""
    provider: str = "cpu"
    """Where the neural rows' models run: ``cpu`` (ONNX Runtime) or ``torch-cuda`` / ``torch-cpu``."""
    precision: str = "auto"
    """As ``--precision`` (``auto``: fp16 on torch-cuda)."""
    torch_compile: bool = False
    photo: Path | None = None
    models_dir: Path | None = None
    model_files: tuple[tuple[str, Path], ...] = ()
    """(registry name, path) pairs used instead of the cache or a stand-in (rows say "given file")."""


@dataclass(frozen=True)
class Row:
    section: str
    name: str
    size: str = "-"
    faces: int | None = None
    frames: int | None = None
    seconds: float | None = None
    fps: float | None = None
    ms_per_frame: float | None = None
    faces_per_s: float | None = None
    peak_rss_mib: float | None = None
    gpu_mib: float | None = None
    """Peak GPU memory; None on CPU (shown as "-")."""
    note: str = ""
    cpu_ms_per_frame: float | None = None
    """CPU time (all threads) per frame: less sensitive than wall time to other work on the machine."""


@dataclass
class BenchReport:
    rows: list[Row] = field(default_factory=list)
    machine: str = ""
    notes: list[str] = field(default_factory=list)


def machine_info() -> str:
    """CPU model, core count and load averages, for the table's header."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = "/".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return f"{model}, {os.cpu_count()} logical cores, load average {load} (1/5/15 min)"


def _in_child(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one job in a fresh spawned process and return its dict."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def _video_row(
    section: str, name: str, size: str, faces: int | None, result: dict[str, Any], note: str
) -> Row:
    frames, seconds = result["frames"], result["seconds"]
    fps = frames / seconds if seconds > 0 else 0.0
    return Row(section, name, size, faces, frames, seconds, fps, 1000.0 / fps if fps else None,
               result["faces"] / seconds if seconds > 0 and result["faces"] else None,
               result["peak_rss_mib"], result.get("gpu_mib"),
               _join(note, _stages(result.get("stage_ms", {}))),
               1000.0 * result["cpu_seconds"] / frames if frames else None)


def _stages(stage_ms: dict[str, float]) -> str:
    """The engine's per-stage ms/frame, largest first (stages under 0.5 ms left out)."""
    parts = [f"{k} {v:.0f}" for k, v in sorted(stage_ms.items(), key=lambda kv: -kv[1]) if v >= 0.5]
    return ("ms/frame: " + ", ".join(parts)) if parts else ""


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _model_paths(options: BenchOptions, folder: Path, names: Sequence[str]) -> tuple[dict, dict, list[str]]:
    """Paths of the real files where installed, else of freshly built stand-ins; and notes on each."""
    from masquerade.models.manifest import get_spec
    from masquerade.models.store import ModelStore

    store = ModelStore(options.models_dir)
    given = {name: str(path) for name, path in options.model_files}
    paths: dict[str, str] = {}
    real: dict[str, bool] = {}
    for name in names:
        spec = get_spec(name)
        real[name] = name not in given and store.is_installed(spec)
        if real[name]:
            paths[name] = str(store.path(spec))
    notes = [f"{n}: given file {given[n]}" for n in names if n in given]
    paths.update({n: given[n] for n in names if n in given})
    missing = [n for n in names if n not in paths]
    if missing:
        built = _in_child(jobs.build_job, str(folder), missing)
        for name, info in built.items():
            paths[name] = str(info["path"])
            params, macs = float(info["parameters"]) / 1e6, float(info["macs"]) / 1e9
            notes.append(f"{name}: random-weight stand-in, {params:.1f} M parameters, {macs:.1f} GMAC/call")
    notes += [f"{n}: real file from the model cache" for n in names if real[n]]
    return paths, real, notes


def run_bench(options: BenchOptions, progress: Callable[[str], None] | None = None) -> BenchReport:
    """Measure every row; ``progress`` gets a short line before each (the CLI shows it on stderr)."""
    say = progress or (lambda _: None)
    photo = str(options.photo or examples_photo())
    report = BenchReport(machine=machine_info())
    sizes = [(label, parse_size(label)) for label in options.sizes]
    with tempfile.TemporaryDirectory(prefix="masquerade-bench-") as tmp:
        folder = Path(tmp)
        out = str(folder / "out.mp4")
        frames = max(round(options.seconds * CLIP_FPS), 1)
        for label, size in sizes:
            for faces in options.faces:
                say(f"clip {label}, {faces} face(s), {frames} frames")
                clip = str(write_clip(folder / f"clip_{label}_{faces}.mp4", frames, size, faces,
                                      CLIP_FPS, Path(photo)))
                if faces == options.faces[0]:
                    say(f"codec only {label}")
                    report.rows.append(_video_row("codec", "codec only (decode + encode)", label, None,
                                                  _in_child(jobs.codec_job, clip, out), ""))
                for mode, name in (("baseline", "sequential baseline"), ("engine", "masquerade engine")):
                    say(f"embedded {mode} {label} {faces} face(s)")
                    result = _in_child(jobs.embedded_job, clip, out, mode, photo, options.threads)
                    report.rows.append(_video_row("embedded", name, label, faces, result, ""))
        if options.neural:
            _neural_rows(options, folder, sizes, photo, report, say)
        if options.memory_check:
            _memory_rows(options, folder, photo, report, say)
    if hasattr(os, "getloadavg"):  # other work on the machine skews every row: say how much there was
        report.notes.append("load average at the end: " + "/".join(f"{v:.2f}" for v in os.getloadavg()))
    return report


def _neural_rows(options: BenchOptions, folder: Path, sizes: list, photo: str, report: BenchReport,
                 say: Callable[[str], None]) -> None:
    names = list(NEURAL_MODELS) + ([ENHANCER_MODEL] if options.enhancer else [])
    say("neural models (building stand-ins where the real files are not installed)")
    paths, real, notes = _model_paths(options, folder, names)
    report.notes += notes
    given = {name for name, _ in options.model_files}
    kind = ", ".join(sorted({"real" if real[n] else "given" if n in given else "stand-in" for n in names}))
    standins = [n for n in names if not real[n] and n not in given]
    backend = jobs.Backend(options.provider, options.precision, options.threads, options.torch_compile)
    report.notes.append(f"neural rows run on {options.provider}, precision {options.precision}"
                        + (", torch.compile" if options.torch_compile else ""))
    wants_int8 = options.int8 and options.provider == "cpu"  # int8 is for ONNX Runtime on the CPU
    int8 = _int8_models(options, folder, paths, real, standins, report, say) if wants_int8 else {}
    runs = [("baseline", "sequential baseline", None), ("engine", "masquerade engine", None)]
    if int8:
        runs.append(("engine", "masquerade engine, int8", int8))
    out = str(folder / "out_neural.mp4")
    for label, size in sizes:
        for faces in options.faces:
            clip = str(write_clip(folder / f"neural_{label}_{faces}.mp4", options.neural_frames, size, faces,
                                  CLIP_FPS, Path(photo)))
            for mode, name, files in runs:
                say(f"{name} {label} {faces} face(s)")
                result = _in_child(jobs.neural_job, clip, out, mode, photo, paths, real, backend, files)
                note = f"{kind}, {options.neural_frames} frames" + (", +enhancer" if options.enhancer else "")
                report.rows.append(_video_row("neural", name, label, faces, result, note))
    if options.models:
        models = [(name, name, path, backend) for name, path in paths.items()]
        cpu = jobs.Backend(threads=options.threads)
        models += [(f"{name} int8", name, path, cpu) for name, path in int8.items()]
        _model_rows(options, models, real, sizes, report, say)


def _int8_models(options: BenchOptions, folder: Path, paths: dict, real: dict, standins: list[str],
                 report: BenchReport, say: Callable[[str], None]) -> dict[str, str]:
    """The int8 files ``--precision int8`` would use (made now where not cached); notes on each gate."""
    say("int8 models (quantised and gated once per model file)")
    models_dir = str(options.models_dir) if options.models_dir else None
    made = _in_child(jobs.int8_job, paths, real, standins, str(folder), options.threads, models_dir)
    files = {}
    for name, info in made.items():
        if "error" in info:
            report.notes.append(f"{name} int8: refused by the quality gate: {info['error']}")
            continue
        caveat = " (random weights: this says nothing about a real model's quality)"
        caveat = caveat if name in standins else ""
        report.notes.append(f"{name} int8: {info['summary']}{caveat}")
        files[name] = info["path"]
    return files


def _model_rows(options: BenchOptions, models: list[tuple[str, str, str, jobs.Backend]], real: dict,
                sizes: list, report: BenchReport, say: Callable[[str], None]) -> None:
    """A row per (label, registry name, file, backend) and batch size; then paste-back alone."""
    cpu_batches = {"inswapper_128": [1, 4], "w600k_r50": [1, 4], "det_10g": [1], ENHANCER_MODEL: [1]}
    # a GPU needs big batches to fill; the CPU is full at 1
    torch_batches = {**cpu_batches, "inswapper_128": [1, 8, 32, 64], "w600k_r50": [1, 32],
                     ENHANCER_MODEL: [1, 8]}
    for name, base, path, backend in models:
        say(f"model alone: {name}")
        batches = (torch_batches if backend.on_torch else cpu_batches)[base]
        result = _in_child(jobs.model_job, base, path, batches, options.model_runs, backend)
        for batch, median in result["medians"].items():
            unit = "frame" if base == "det_10g" else "face"
            label = f"{name} alone, batch {batch}"
            if median is None:
                report.rows.append(Row("model", label, note="graph pins another batch size"))
                continue
            per_s = int(batch) / median
            note = f"{'real' if real[base] else 'stand-in'}, {1000 * median:.0f} ms/run"
            report.rows.append(Row("model", label, faces=int(batch) if unit == "face" else None,
                                   ms_per_frame=1000 * median / int(batch) if unit == "frame" else None,
                                   fps=per_s if unit == "frame" else None,
                                   faces_per_s=per_s if unit == "face" else None,
                                   peak_rss_mib=result["peak_rss_mib"], gpu_mib=result.get("gpu_mib"),
                                   note=note))
    for label, size in sizes:
        say(f"paste-back alone {label}")
        result = _in_child(jobs.paste_job, size, 20)
        for key, name in (("roi", "paste-back, ROI (ours)"), ("full_frame", "paste-back, full frame (roop)")):
            report.rows.append(Row("paste", name, label, 1, ms_per_frame=1000 * result[key],
                                   faces_per_s=1.0 / result[key], peak_rss_mib=result["peak_rss_mib"]))


def _memory_rows(options: BenchOptions, folder: Path, photo: str, report: BenchReport,
                 say: Callable[[str], None]) -> None:
    out = str(folder / "out_memory.mp4")
    for seconds in (10, 60):
        say(f"memory check: {seconds} s 720p clip")
        clip = str(write_clip(folder / f"memory_{seconds}.mp4", seconds * CLIP_FPS, parse_size("720p"), 1,
                              CLIP_FPS, Path(photo)))
        result = _in_child(jobs.embedded_job, clip, out, "engine", photo, options.threads)
        name = f"masquerade engine, {seconds} s clip"
        report.rows.append(_video_row("memory", name, "720p", 1, result, ""))
        Path(clip).unlink()


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_table(report: BenchReport) -> str:
    """The report as one plain-text table with its header and notes."""
    head = ("section", "row", "size", "faces", "frames", "fps", "ms/frame", "CPU ms/frame", "faces/s",
            "peak RSS MiB", "GPU MiB", "note")
    body = [(r.section, r.name, r.size, _cell(r.faces), _cell(r.frames), _cell(r.fps), _cell(r.ms_per_frame),
             _cell(r.cpu_ms_per_frame, 0), _cell(r.faces_per_s, 2), _cell(r.peak_rss_mib, 0),
             _cell(r.gpu_mib, 0), r.note) for r in report.rows]
    widths = [max(len(str(line[i])) for line in [head, *body]) for i in range(len(head))]
    lines = [f"machine: {report.machine}"]
    for line in [head, *body]:
        lines.append("  ".join(str(c).ljust(w) if i in (0, 1, 2, 11) else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip())
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)
