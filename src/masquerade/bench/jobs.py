"""The measurements of ``masquerade bench``, each meant to run in a fresh process (its peak RSS is its own).

Every job takes plain arguments (picklable under the spawn start method) and returns a dict of
figures plus ``peak_rss_mib``, the process's own peak resident memory. Timings cover the frame
loop (open, decode, process, encode, close), not model loading.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from masquerade.bench.baseline import LoopResult
from masquerade.config import DetectOptions, RunConfig, RuntimeOptions, SelectOptions, SwapOptions


@dataclass(frozen=True)
class Backend:
    """Where the neural models run in a job (picklable, so spawned jobs get it as an argument)."""

    provider: str = "cpu"
    """``cpu`` (ONNX Runtime) or a PyTorch provider (``torch-cuda``, ``torch-cpu``)."""
    precision: str = "auto"
    threads: int | None = None
    compile: bool = False
    """PyTorch providers: ``torch.compile`` every model (its warm-up runs before the clock starts)."""

    @property
    def on_torch(self) -> bool:
        from masquerade._backends import TORCH_PROVIDERS

        return self.provider in TORCH_PROVIDERS

    def session(self, path: str | Path) -> Any:
        """A session of the model at ``path`` as a run with these options would make it."""
        from masquerade._stages.build import new_model_session

        return new_model_session(Path(path), self.runtime())

    def runtime(self) -> RuntimeOptions:
        return RuntimeOptions(execution_provider=self.provider, execution_threads=self.threads,
                              precision=self.precision, torch_compile=self.compile)  # type: ignore[arg-type]


def peak_rss_mib() -> float:
    """This process's peak resident set size (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def peak_gpu_mib() -> float | None:
    """Peak CUDA memory PyTorch allocated in this process; None where no CUDA ran (torch never imported)."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def _result(loop: LoopResult) -> dict[str, Any]:
    return {**loop._asdict(), "stage_ms": loop.stage_ms or {}, "peak_rss_mib": peak_rss_mib(),
            "gpu_mib": peak_gpu_mib()}


def _engine_loop(clip: Path, output: Path, video_stages: Any, batch: int = 1, workers: int = 1) -> LoopResult:
    """The file API's video path: decode thread -> analyse (batches of frames) -> render workers ->
    encode thread. ``video_stages(fps)`` gives ``(analyse, render)``; render may be None."""
    from masquerade.config import EncodeOptions
    from masquerade.engine import StreamEngine
    from masquerade.media.reader import VideoReader
    from masquerade.media.writer import VideoWriter

    counts = [0, 0]
    stages: dict[str, float] = {}
    started, cpu = time.perf_counter(), time.process_time()
    with VideoReader(clip) as reader:
        fps = float(reader.info.fps) if reader.info.fps else 25.0
        with VideoWriter(output, reader, EncodeOptions()) as writer:

            def consume(ctx: Any) -> None:
                writer.write(ctx)
                counts[0] += 1
                counts[1] += ctx.swapped
                for stage, seconds in ctx.timings.items():
                    stages[stage] = stages.get(stage, 0.0) + seconds

            analyse, render = video_stages(fps)
            StreamEngine(depth=4).run_batches(reader.frames(), analyse, consume, batch, render, workers)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    per_frame = {k: 1000 * v / max(counts[0], 1) for k, v in stages.items()}
    return LoopResult(counts[0], counts[1], seconds, cpu, per_frame)


def codec_job(clip: str, output: str) -> dict[str, Any]:
    """Decode + encode through the engine's threads, no processing: the ceiling of any run."""
    return _result(_engine_loop(Path(clip), Path(output), lambda fps: (lambda batch: batch, None)))


def _source(photo: str) -> Any:
    from masquerade.media.image import read_image

    return [("source", read_image(Path(photo)).image)]


def embedded_job(clip: str, output: str, mode: str, photo: str, threads: int | None) -> dict[str, Any]:
    """The embedded default (mesh detector, tracker, mesh swapper, watermark): ``baseline`` or ``engine``."""
    from masquerade.pipeline import Pipeline

    config = RunConfig(select=SelectOptions(mode="all"), runtime=RuntimeOptions(execution_threads=threads))
    pipeline = Pipeline(config)
    prepared = pipeline.prepare_source(_source(photo))
    if mode == "baseline":
        from masquerade.bench.baseline import run_embedded_baseline

        return _result(run_embedded_baseline(pipeline, prepared, Path(clip), Path(output)))
    stages = lambda fps: pipeline.video_stages(prepared, fps, None)  # noqa: E731
    return _result(_engine_loop(Path(clip), Path(output), stages, pipeline.frame_batch(),
                                pipeline.frame_workers()))


class StandinScrfd:
    """Pays a SCRFD graph's full cost on every ``detect`` and takes the faces from the embedded mesh.

    A random-weight detector finds no faces, so the boxes come from the mesh detector without its
    small-face tiles (it finds every face of the bench clips; at 1080p it costs 29 ms, against 176 ms
    with tiles and 5 ms for the mesh refinement a real SCRFD run adds). ``refine`` is the mesh's, as
    in ``build``'s SCRFD + mesh analyser, so tracked frames skip SCRFD exactly as in a real run.
    """

    def __init__(self, scrfd: Any, mesh: Any) -> None:
        self.scrfd, self.mesh = scrfd, mesh

    def detect(self, image: Any) -> list[Any]:
        self.scrfd.detect(image)
        return self.mesh.detect(image)

    def refine(self, image: Any, faces: Any) -> list[Any]:
        return self.mesh.refine(image, faces)


def neural_pipeline(
    paths: dict[str, str], real: dict[str, bool], backend: Backend, int8: dict[str, str] | None = None,
    on_device: bool = True,
) -> tuple[Any, Any]:
    """A Pipeline of SCRFD + ArcFace + inswapper (+ GFPGAN when ``paths`` has it), and the recognizer.

    ``int8`` maps model names to the int8 files to run in their place. On a PyTorch backend the
    swapper and enhancer work on the device (crops and paste-back included) when ``on_device``; else
    only the model calls run there and the pixels stay in numpy, as roop does with a GPU.
    """
    from masquerade._stages.build import DetectorWithMesh
    from masquerade._stages.detect import MeshAnalyser
    from masquerade._stages.detect_scrfd import ScrfdDetector
    from masquerade._stages.enhance import FaceEnhancer
    from masquerade._stages.protocols import Stages
    from masquerade._stages.recognize_arcface import ArcFaceRecognizer
    from masquerade._stages.swap_neural import NeuralSwapper, load_emap
    from masquerade.models.manifest import get_spec
    from masquerade.pipeline import Pipeline

    def session(name: str) -> Any:
        return backend.session((int8 or {}).get(name, paths[name]))

    mesh = MeshAnalyser(DetectOptions(tiles=False), threads=backend.threads)  # tiles: see StandinScrfd
    scrfd = ScrfdDetector(session("det_10g"), get_spec("det_10g"))
    analyser = DetectorWithMesh(scrfd, mesh) if real.get("det_10g") else StandinScrfd(scrfd, mesh)
    recognizer = ArcFaceRecognizer(session("w600k_r50"), get_spec("w600k_r50"))
    swap_options = SwapOptions(swapper="inswapper_128")
    emap = load_emap(Path(paths["inswapper_128"]))
    spec = get_spec("inswapper_128")
    swapper: Any = NeuralSwapper(session("inswapper_128"), spec, swap_options, recognizer, emap=emap)
    enhancer: Any = None
    if "gfpgan_1.4" in paths:
        enhancer = FaceEnhancer(session("gfpgan_1.4"), get_spec("gfpgan_1.4"), 0.8)
    if backend.on_torch and on_device:
        from masquerade._backends.torch_swap import DeviceEnhancer, DeviceSwapper

        # as build does: the enhancer runs on the device right after the swap
        swapper = DeviceSwapper(swapper, DeviceEnhancer(enhancer) if enhancer is not None else None)
        enhancer = None
    stages = Stages(analyser=analyser, swapper=swapper, enhancer=enhancer)
    config = RunConfig(select=SelectOptions(mode="all"), swap=swap_options, runtime=backend.runtime())
    return Pipeline._with_stages(config, stages), recognizer


def neural_job(
    clip: str, output: str, mode: str, photo: str, paths: dict[str, str], real: dict[str, bool],
    backend: Backend, int8: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The neural path over the whole (short) clip: ``baseline`` (roop-style) or ``engine``."""
    pipeline, recognizer = neural_pipeline(paths, real, backend, int8, on_device=mode == "engine")
    source = _source(photo)
    prepared = pipeline.prepare_source(source)  # runs the detector and ArcFace once
    # A session's first runs are several times slower; with a few frames per row that would swamp
    # the figures, so every model runs once before the clock starts (steady state is measured).
    image, face = source[0][1], prepared.faces[0]
    pipeline._stages.swapper.swap(image, face, prepared._swapper_input)
    if pipeline._stages.enhancer is not None:
        pipeline._stages.enhancer.enhance(image, face)
    if mode == "baseline":
        from masquerade.bench.baseline import run_neural_baseline

        return _result(run_neural_baseline(pipeline, prepared, Path(clip), Path(output), recognizer, None))
    stages = lambda fps: pipeline.video_stages(prepared, fps, None)  # noqa: E731
    return _result(_engine_loop(Path(clip), Path(output), stages, pipeline.frame_batch(),
                                pipeline.frame_workers()))


def int8_job(paths: dict[str, str], real: dict[str, bool], standins: list[str], folder: str,
             threads: int | None, models_dir: str | None) -> dict[str, dict[str, Any]]:
    """The gated int8 swapper (and enhancer) as ``--precision int8`` makes them: file and gate figures.

    Files from the cache use its int8 folder, other files are quantised in ``folder``. The gate's
    threshold is the real one except for the random-weight ``standins`` (0 there: random weights say
    nothing about quality, only about speed). A refused model gets ``error`` instead of a file.
    """
    from masquerade._stages.calibration import enhancer_calibration, swapper_calibration
    from masquerade.errors import ModelError
    from masquerade.models.download import sha256_file
    from masquerade.models.manifest import get_spec
    from masquerade.models.quantize import MIN_PSNR_DB, int8_model
    from masquerade.models.store import ModelStore

    pipeline, _ = neural_pipeline(paths, real, Backend(threads=threads))
    store = ModelStore(Path(models_dir) if models_dir else None)
    stages = {"inswapper_128": lambda: swapper_calibration(pipeline._stages.swapper)}
    if pipeline._stages.enhancer is not None:
        stages["gfpgan_1.4"] = lambda: enhancer_calibration(pipeline._stages.enhancer)
    made: dict[str, dict[str, Any]] = {}
    for name, calibrate in stages.items():
        path = Path(paths[name])
        if real.get(name):
            digest, cache = store.digest(get_spec(name)), store.int8_dir
        else:
            digest, cache = sha256_file(path), Path(folder) / "int8"
        threshold = 0.0 if name in standins else MIN_PSNR_DB
        try:
            result = int8_model(path, digest, cache, calibrate, threads, min_psnr=threshold)
        except ModelError as error:
            made[name] = {"error": str(error)}
            continue
        made[name] = {"path": str(result.path), "summary": result.report.summary()}
    return made


_FEEDS = {
    "inswapper_128": lambda n: {"target": (n, 3, 128, 128), "source": (n, 512)},
    "w600k_r50": lambda n: {"input.1": (n, 3, 112, 112)},
    "det_10g": lambda n: {"input.1": (n, 3, 640, 640)},
    "gfpgan_1.4": lambda n: {"input": (n, 3, 512, 512)},
}


def model_job(name: str, path: str, batches: list[int], runs: int, backend: Backend) -> dict[str, Any]:
    """One model alone on random inputs: median seconds per call at each batch size.

    ONNX Runtime is timed through ``session.run``; a PyTorch session through ``run_torch`` on inputs
    already on the device, synchronised, so the figure is the model's alone. A batch the graph
    cannot take (pinned batch dimension) is reported as None.
    """
    session = backend.session(path)
    rng = np.random.default_rng(0)
    medians: dict[int, float | None] = {}
    for batch in batches:
        feeds: dict[str, Any] = {k: rng.random(shape, np.float32) for k, shape in _FEEDS[name](batch).items()}
        if name == "gfpgan_1.4" and len(session.get_inputs()) > 1:
            feeds = {session.get_inputs()[0].name: next(iter(feeds.values()))}
        call = _timed_call(session, feeds, backend)
        try:
            call()  # warm-up (and the batch check)
        except Exception:  # ORT's own error types, or ModelError from PyTorch: another batch size is pinned
            medians[batch] = None
            continue
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            call()
            times.append(time.perf_counter() - started)
        medians[batch] = float(np.median(times))
    return {"medians": medians, "peak_rss_mib": peak_rss_mib(), "gpu_mib": peak_gpu_mib()}


def _timed_call(session: Any, feeds: dict[str, Any], backend: Backend) -> Any:
    if not backend.on_torch:
        return lambda: session.run(None, feeds)
    import torch

    tensors = {k: torch.from_numpy(v).to(session.device) for k, v in feeds.items()}
    sync = torch.cuda.synchronize if session.device.type == "cuda" else (lambda: None)

    def call() -> None:
        session.run_torch(tensors)
        sync()

    return call


def paste_job(size: tuple[int, int], runs: int) -> dict[str, Any]:
    """Milliseconds of one face's paste-back at frame ``size``: our ROI paste vs InsightFace's full frame."""
    from masquerade._stages.paste import box_mask, paste_back
    from masquerade.bench.baseline import paste_full_frame
    from masquerade.geometry.align import crop_affine
    from masquerade.models.manifest import ARCFACE_128

    width, height = size
    frame = np.random.default_rng(0).integers(0, 256, (height, width, 3), np.uint8)
    s = min(width, height) / 720.0  # a face of ~200 px at 720p
    kps = np.array([[600, 300], [700, 300], [650, 360], [610, 420], [690, 420]], np.float32) * s
    affine = crop_affine(kps, ARCFACE_128, 128)
    crop = np.full((128, 128, 3), 128.0, np.float32)
    mask = box_mask(128)
    figures = {}
    for label, paste in (("roi", lambda: paste_back(frame, crop, mask, affine)),
                         ("full_frame", lambda: paste_full_frame(frame, crop, affine))):
        paste()
        started = time.perf_counter()
        for _ in range(runs):
            paste()
        figures[label] = (time.perf_counter() - started) / runs
    return {**figures, "peak_rss_mib": peak_rss_mib()}


def build_job(folder: str, names: list[str]) -> dict[str, dict[str, float | str]]:
    """Write the architecture-faithful stand-ins named in ``names`` into ``folder``."""
    from masquerade.models import standins_arch as arch

    builders = {"inswapper_128": arch.inswapper_arch, "w600k_r50": arch.iresnet50_arch,
                "det_10g": arch.scrfd10g_arch, "gfpgan_1.4": arch.gfpgan_arch}
    built: dict[str, dict[str, float | str]] = {}
    for name in names:
        model, stats = builders[name]()
        path = Path(folder) / f"{name}_standin.onnx"
        path.write_bytes(model.SerializeToString())
        del model
        built[name] = {"path": str(path), "parameters": stats.parameters, "macs": stats.macs}
    return built
