"""Builds a run's stage objects from its RunConfig, resolving model files through the registry.

Every model file the run needs is resolved before any is loaded, so a user missing several files
gets one message that lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from masquerade._stages.protocols import Stages
from masquerade.config import NO_SWAP, TORCH_PROVIDERS, RunConfig, RuntimeOptions, matches_people, validate
from masquerade.errors import UsageError

EMBEDDED_SWAPPERS = ("mesh",)
EMBEDDED_RECOGNIZERS = ("dlib",)
EMBEDDED_DETECTORS = ("mesh",)
NEURAL_DETECTORS = {"scrfd": "det_10g"}
NEURAL_RECOGNIZERS = {"arcface": "w600k_r50"}


def needed_models(config: RunConfig) -> list[str]:
    """Names of registry models the run needs, in a stable order (pure; no files touched)."""
    from masquerade.models.manifest import get_spec

    names: list[str] = []

    def need(name: str) -> None:
        if name not in names:
            names.append(name)

    if config.detect.detector in NEURAL_DETECTORS:
        need(NEURAL_DETECTORS[config.detect.detector])
    elif config.detect.detector not in EMBEDDED_DETECTORS:
        raise UsageError(f"unknown detector {config.detect.detector!r}")
    if config.recognizer in NEURAL_RECOGNIZERS:
        need(NEURAL_RECOGNIZERS[config.recognizer])
    elif config.recognizer not in EMBEDDED_RECOGNIZERS:
        raise UsageError(f"unknown recognizer {config.recognizer!r}")
    if config.swap.swapper not in (*EMBEDDED_SWAPPERS, NO_SWAP):
        spec = get_spec(config.swap.swapper)
        need(spec.name)
        if spec.embedding_from:
            need(spec.embedding_from)
    if config.enhance.enhancer != "none":
        need(get_spec(config.enhance.enhancer).name)
    return names


def check_runtime(config: RunConfig) -> None:
    """Raise UsageError for any invalid option (:func:`masquerade.config.validate`), then check up front
    that the run's execution provider is really there (ProviderUnavailable naming what to install), so
    no model is resolved or loaded for a run that cannot happen."""
    validate(config)
    check_provider_installed(config.runtime.execution_provider)


def check_provider_installed(provider: str) -> None:
    """ProviderUnavailable unless ``provider`` can run here: the onnxruntime build offers it, or PyTorch
    is installed (with a GPU for torch-cuda). Cheap: nothing is loaded."""
    if provider in TORCH_PROVIDERS:
        from masquerade._backends.torch_session import check_device

        check_device("cuda" if provider == "torch-cuda" else "cpu", provider=provider)
    elif provider != "cpu":
        from masquerade.models.runtime import check_provider

        check_provider(provider)


def build_stages(config: RunConfig, on_notice: Callable[[str], None] | None = None) -> Stages:
    """The run's stages. ``on_notice`` hears at once about slow one-time work (making int8 models)."""
    from masquerade._stages.detect import MeshAnalyser

    check_runtime(config)
    threads = config.runtime.execution_threads
    mesh = MeshAnalyser(config.detect, threads=threads)
    sessions = _ModelSessions(config, needed_models(config), on_notice)

    analyser: Any = mesh
    if config.detect.detector in NEURAL_DETECTORS:
        from masquerade._stages.detect_scrfd import ScrfdDetector

        name = NEURAL_DETECTORS[config.detect.detector]
        detector = ScrfdDetector(*sessions.get(name), score_threshold=config.detect.min_score)
        analyser = DetectorWithMesh(detector, mesh)

    recognizer: Any = None
    if matches_people(config):
        recognizer = _recognizer(config.recognizer, sessions)

    swapper: Any = None  # stays None in an enhance-only run
    if config.swap.swapper == "mesh":
        from masquerade._stages.swap_mesh import MeshSwapper

        swapper = MeshSwapper(config.swap)
    elif config.swap.swapper != NO_SWAP:
        from masquerade._stages.recognize_arcface import ArcFaceRecognizer
        from masquerade._stages.swap_neural import NeuralSwapper, load_emap
        from masquerade.models.manifest import get_spec

        spec = get_spec(config.swap.swapper)
        source_recognizer = ArcFaceRecognizer(*sessions.get(spec.embedding_from or "w600k_r50"))
        emap = load_emap(sessions.data(spec.name)) if spec.embedding_transform == "emap" else None

        def new_swapper(session: Any) -> NeuralSwapper:
            return NeuralSwapper(session, spec, config.swap, source_recognizer, emap=emap)

        if config.runtime.precision == "int8":
            from masquerade._stages.calibration import swapper_calibration

            int8 = sessions.int8(spec.name, lambda fp32: swapper_calibration(new_swapper(fp32)))
            swapper = new_swapper(int8)
        else:
            swapper = new_swapper(sessions.get(spec.name)[0])
        if sessions.on_torch:
            from masquerade._backends.torch_swap import DeviceSwapper

            swapper = DeviceSwapper(swapper)

    enhancer: Any = None
    if config.enhance.enhancer != "none":
        from masquerade._stages.enhance import FaceEnhancer
        from masquerade.models.manifest import get_spec

        enhance = config.enhance
        enhancer_spec = get_spec(enhance.enhancer)

        def new_enhancer(session: Any) -> FaceEnhancer:
            return FaceEnhancer(session, enhancer_spec, enhance.blend, fidelity=enhance.fidelity)

        if config.runtime.precision == "int8":
            from masquerade._stages.calibration import enhancer_calibration

            enhancer = new_enhancer(
                sessions.int8(enhancer_spec.name, lambda fp32: enhancer_calibration(new_enhancer(fp32))))
        else:
            enhancer = new_enhancer(sessions.get(enhancer_spec.name)[0])
        if sessions.on_torch:
            from masquerade._backends.torch_swap import DeviceEnhancer, DeviceSwapper

            enhancer = DeviceEnhancer(enhancer)
            if isinstance(swapper, DeviceSwapper):
                # Enhance on the device straight after the swap: each frame crosses the bus once each way.
                swapper, enhancer = DeviceSwapper(swapper.swapper, enhancer=enhancer), None

    return Stages(analyser=analyser, swapper=swapper, recognizer=recognizer, enhancer=enhancer,
                  notices=sessions.notices)


def new_model_session(model: Path | bytes, runtime: RuntimeOptions, name: str | None = None) -> Any:
    """The session a run with ``runtime`` opens for ``model`` (bytes as the model store verified them,
    or the path of a file masquerade made): ONNX Runtime on its provider, or the PyTorch backend in the
    dtype ``--precision`` asks for (compiled with ``--torch-compile``). ``name`` names it in errors."""
    from masquerade._backends import TORCH_PROVIDERS

    provider = runtime.execution_provider
    if provider in TORCH_PROVIDERS:
        from masquerade._backends.torch_session import new_torch_session

        dtype = torch_dtype(runtime.precision, provider)
        return new_torch_session(model, provider, dtype, runtime.torch_compile, name=name)
    from masquerade.models.runtime import new_session

    return new_session(model, provider, runtime.execution_threads, name=name)


def torch_dtype(precision: str, provider: str) -> str:
    """The PyTorch backend's dtype for ``--precision``: ``auto`` is fp16 on CUDA, the file's own on CPU."""
    if precision == "auto":
        return "fp16" if provider == "torch-cuda" else "auto"
    return precision


def _recognizer(name: str, sessions: _ModelSessions) -> Any:
    if name == "dlib":
        from masquerade._stages.recognize import DlibRecognizer

        return DlibRecognizer()
    from masquerade._stages.recognize_arcface import ArcFaceRecognizer

    return ArcFaceRecognizer(*sessions.get(NEURAL_RECOGNIZERS[name]))


class _ModelSessions:
    """Resolves all needed files at once (one message for every missing file); one session per model.

    Each model file is read once and hashed when it is first needed, and its session is built from
    those bytes (:meth:`ModelStore.load`): no file reaches ONNX Runtime or PyTorch unhashed.
    """

    def __init__(self, config: RunConfig, names: list[str], on_notice: Callable[[str], None] | None = None,
                 ) -> None:
        from masquerade.models.store import ModelStore

        self._config = config
        self._on_notice = on_notice
        self._sessions: dict[str, Any] = {}
        self._verified: dict[str, Any] = {}
        """Verified bytes read for the emap and not yet made into a session (dropped once it is)."""
        self._store = ModelStore(config.runtime.models_dir)
        self.notices: list[str] = []
        """Licence notices of non-commercial models used for the first time (shown once per cache), models
        imported with an unknown hash (every run), and the quality figures of int8 models made in this run."""
        if names:
            from masquerade.models.manifest import get_spec

            specs = [get_spec(name) for name in names]
            self._store.require(specs)
            self.notices = [n for n in map(self._store.take_licence_notice, specs) if n is not None]

    def _model(self, name: str) -> Any:
        """Model ``name``'s verified bytes (read and hashed once per session made)."""
        from masquerade.models.manifest import get_spec

        if name not in self._verified:
            verified = self._store.load(get_spec(name))
            notice = verified.unverified_notice()
            if notice is not None and notice not in self.notices:
                self.notices.append(notice)
            self._verified[name] = verified
        return self._verified[name]

    def data(self, name: str) -> bytes:
        """The verified bytes of model ``name`` (e.g. to read the swapper's emap from)."""
        return self._model(name).data

    def get(self, name: str) -> tuple[Any, Any]:
        from masquerade.models.manifest import get_spec

        if name not in self._sessions:
            model = self._model(name)
            session = new_model_session(model.data, self._config.runtime, model.path.name)
            self._verified.pop(name, None)
            batch_notice = getattr(session, "batch_notice", None)  # PyTorch: a graph that cannot batch
            if batch_notice:
                self.notices.append(batch_notice)
            self._sessions[name] = session
        return self._sessions[name], get_spec(name)

    def int8(self, name: str, calibrate: Callable[[Any], Any]) -> Any:
        """A session of the gated int8 version of model ``name``, made (once per file) if not cached.

        ``calibrate`` gets a session of the fp32 model and returns the CalibrationSet; it runs only
        when the int8 model has to be made.
        """
        from masquerade.models.quantize import int8_model
        from masquerade.models.runtime import new_session

        threads = self._config.runtime.execution_threads
        fp32 = self._model(name)

        def announce() -> None:
            if self._on_notice is not None:
                self._on_notice(f"making an int8 {name} for this CPU and checking it against fp32 "
                                f"(once per model file; a minute or more)")

        quantized = int8_model(
            fp32.path, fp32.sha256, self._store.int8_dir,
            lambda: calibrate(new_session(fp32.data, "cpu", threads, name=fp32.path.name)),
            threads, on_start=announce, fp32_data=fp32.data,
        )
        self._verified.pop(name, None)
        if quantized.made_now:
            self.notices.append(f"int8 {name}: {quantized.report.summary()}")
        return new_session(quantized.data, "cpu", threads, name=quantized.path.name)

    @property
    def on_torch(self) -> bool:
        """Models run through PyTorch (crops and paste-back then stay on the device too)."""
        from masquerade._backends import TORCH_PROVIDERS

        return self._config.runtime.execution_provider in TORCH_PROVIDERS


class DetectorWithMesh:
    """A neural detector's boxes, with the embedded mesh adding dense landmarks for tracking and masks."""

    def __init__(self, detector: Any, mesh: Any) -> None:
        self.detector = detector
        self.mesh = mesh

    def detect(self, image: Any) -> list[Any]:
        return self.mesh.refine(image, self.detector.detect(image))

    def refine(self, image: Any, faces: Any) -> list[Any]:
        return self.mesh.refine(image, faces)
