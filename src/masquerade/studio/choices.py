"""Model choices for the page: which are installed, and for a missing one the CLI's own hint."""

from __future__ import annotations

from typing import Any

from masquerade.config import RunConfig
from masquerade.models.manifest import get_spec
from masquerade.models.store import ModelStore
from masquerade.studio.options import option_names

MODEL_OPTIONS = ("swapper", "enhancer", "detector", "recognizer")
NEURAL_PARTS = {"detector": {"scrfd": "det_10g"}, "recognizer": {"arcface": "w600k_r50"}}
"""Detector and recognizer choices named differently from their registry model (as ``--detector scrfd``
loads ``det_10g``); swappers and enhancers are named as their registry entries."""
EMBEDDED = {"mesh", "dlib", "none"}


def needed(option: str, choice: str) -> list[str]:
    """Registry models a choice needs (a neural swapper also needs the recognizer it embeds with)."""
    if choice in EMBEDDED:
        return []
    if option in NEURAL_PARTS:
        return [NEURAL_PARTS[option][choice]]
    spec = get_spec(choice)
    return [spec.name, *([spec.embedding_from] if spec.embedding_from else [])]


def missing_hint(store: ModelStore, names: list[str]) -> str | None:
    """The CLI's message for the models among ``names`` that are not installed, or None."""
    missing = [store.spec(n) for n in dict.fromkeys(names) if not store.is_installed(store.spec(n))]
    return store.missing_message(missing) if missing else None


def model_choices(store: ModelStore) -> dict[str, list[dict[str, Any]]]:
    actions = option_names()
    listing: dict[str, list[dict[str, Any]]] = {}
    for option in MODEL_OPTIONS:
        entries = []
        for choice in actions[option].choices or ():
            names = needed(option, choice)
            hint = missing_hint(store, names)
            entries.append({"value": choice, "embedded": not names, "installed": hint is None,
                            "models": names, "hint": hint,
                            "licence": get_spec(names[0]).licence if names else None})
        listing[option] = entries
    return listing


def config_missing(store: ModelStore, config: RunConfig) -> tuple[str, str] | None:
    """(option, the CLI's hint) for the first model option of ``config`` whose models are missing."""
    chosen = {"swapper": config.swap.swapper, "enhancer": config.enhance.enhancer,
              "detector": config.detect.detector, "recognizer": config.recognizer}
    for option, choice in chosen.items():
        hint = missing_hint(store, needed(option, choice))
        if hint:
            return option, hint
    return None
