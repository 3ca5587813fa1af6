"""Builds a run's stage objects from its RunConfig, resolving model files through the registry.

Every model file the run needs is resolved before any is loaded, so a user missing several files
gets one message that lists them all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from masquerade.config import RunConfig
from masquerade.errors import UsageError
from masquerade.pipeline import Stages

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
    if config.swap.swapper not in EMBEDDED_SWAPPERS:
        spec = get_spec(config.swap.swapper)
        need(spec.name)
        if spec.embedding_from:
            need(spec.embedding_from)
    if config.enhance.enhancer != "none":
        need(get_spec(config.enhance.enhancer).name)
    return names


def build_stages(config: RunConfig) -> Stages:
    from masquerade.stages.detect import MeshAnalyser

    threads = config.runtime.execution_threads
    mesh = MeshAnalyser(config.detect, threads=threads)
    sessions = _ModelSessions(config, needed_models(config))

    analyser: Any = mesh
    if config.detect.detector in NEURAL_DETECTORS:
        from masquerade.stages.detect_scrfd import ScrfdDetector

        name = NEURAL_DETECTORS[config.detect.detector]
        detector = ScrfdDetector(*sessions.get(name), score_threshold=config.detect.min_score)
        analyser = DetectorWithMesh(detector, mesh)

    recognizer: Any = None
    if config.select.mode == "reference":
        recognizer = _recognizer(config.recognizer, sessions)

    if config.swap.swapper == "mesh":
        from masquerade.stages.swap_mesh import MeshSwapper

        swapper: Any = MeshSwapper(config.swap)
    else:
        from masquerade.models.manifest import get_spec
        from masquerade.stages.recognize_arcface import ArcFaceRecognizer
        from masquerade.stages.swap_neural import NeuralSwapper, load_emap

        spec = get_spec(config.swap.swapper)
        source_recognizer = ArcFaceRecognizer(*sessions.get(spec.embedding_from or "w600k_r50"))
        emap = load_emap(sessions.path(spec.name)) if spec.embedding_transform == "emap" else None
        swapper = NeuralSwapper(*sessions.get(spec.name), config.swap, source_recognizer, emap=emap)
        if sessions.on_torch:
            from masquerade.backends.torch_swap import DeviceSwapper

            swapper = DeviceSwapper(swapper)

    enhancer: Any = None
    if config.enhance.enhancer != "none":
        from masquerade.stages.enhance import FaceEnhancer

        enhancer = FaceEnhancer(*sessions.get(config.enhance.enhancer), config.enhance.blend,
                                fidelity=config.enhance.fidelity)
        if sessions.on_torch:
            from masquerade.backends.torch_swap import DeviceEnhancer

            enhancer = DeviceEnhancer(enhancer)

    return Stages(analyser=analyser, swapper=swapper, recognizer=recognizer, enhancer=enhancer,
                  notices=sessions.notices)


def _recognizer(name: str, sessions: _ModelSessions) -> Any:
    if name == "dlib":
        from masquerade.stages.recognize import DlibRecognizer

        return DlibRecognizer()
    from masquerade.stages.recognize_arcface import ArcFaceRecognizer

    return ArcFaceRecognizer(*sessions.get(NEURAL_RECOGNIZERS[name]))


class _ModelSessions:
    """Resolves all needed files at once (one message for every missing file); one session per model."""

    def __init__(self, config: RunConfig, names: list[str]) -> None:
        self._config = config
        self._sessions: dict[str, Any] = {}
        self._paths: dict[str, Path] = {}
        self.notices: list[str] = []
        """Licence notices of non-commercial models used for the first time (shown once per cache)."""
        if names:
            from masquerade.models.manifest import get_spec
            from masquerade.models.store import ModelStore

            store = ModelStore(config.runtime.models_dir)
            specs = [get_spec(name) for name in names]
            self._paths = store.require(specs)
            self.notices = [n for n in map(store.take_licence_notice, specs) if n is not None]

    def path(self, name: str) -> Path:
        return self._paths[name]

    def get(self, name: str) -> tuple[Any, Any]:
        from masquerade.models.manifest import get_spec
        from masquerade.models.runtime import new_session

        if name not in self._sessions:
            runtime = self._config.runtime
            if self.on_torch:
                from masquerade.backends.torch_session import new_torch_session

                self._sessions[name] = new_torch_session(self._paths[name], runtime.execution_provider)
            else:
                self._sessions[name] = new_session(
                    self._paths[name], runtime.execution_provider, runtime.execution_threads
                )
        return self._sessions[name], get_spec(name)

    @property
    def on_torch(self) -> bool:
        """Models run through PyTorch (crops and paste-back then stay on the device too)."""
        from masquerade.backends import TORCH_PROVIDERS

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
