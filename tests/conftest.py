"""Shared fixtures: real public-domain photos bundled in examples/."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="session", autouse=True)
def _private_home(tmp_path_factory):
    """Keys and caches the tests create go to a temporary home, never the user's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MASQUERADE_HOME", str(tmp_path_factory.mktemp("masquerade-home")))
        yield


def _load(name: str) -> np.ndarray:
    image = cv2.imread(str(EXAMPLES / name), cv2.IMREAD_COLOR)
    assert image is not None, name
    return image


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def obama() -> np.ndarray:
    return _load("obama.jpg")


@pytest.fixture(scope="session")
def obama2() -> np.ndarray:
    return _load("obama2.jpg")


@pytest.fixture(scope="session")
def biden() -> np.ndarray:
    return _load("biden.jpg")


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    return _load("astronaut.png")


@pytest.fixture(scope="session")
def photos(obama, obama2, biden, astronaut) -> dict[str, np.ndarray]:
    """All sample photos by name."""
    return {"obama": obama, "obama2": obama2, "biden": biden, "astronaut": astronaut}


@pytest.fixture(scope="session")
def two_people(obama, biden) -> np.ndarray:
    """Obama (left) and Biden (right), side by side, faces about the same size."""
    height = 600
    left = cv2.resize(obama, (round(obama.shape[1] * height / obama.shape[0]), height))
    right = biden[: biden.shape[0] // 3]  # head and shoulders
    right = cv2.resize(right, (round(right.shape[1] * height / right.shape[0]), height))
    return np.ascontiguousarray(np.hstack([left, right]))
