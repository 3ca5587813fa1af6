"""Synthetic group photos composed from the sample faces (see ``masquerade.bench.groups``)."""

from __future__ import annotations

import numpy as np
import pytest

from masquerade.bench.groups import GROUP_LAYOUT, Placed, compose_group
from masquerade.bench.groups import turned_group as make_turned_group


@pytest.fixture(scope="session")
def group_photo(obama, obama2, biden, astronaut) -> tuple[np.ndarray, tuple[Placed, ...]]:
    samples = {"obama": obama, "obama2": obama2, "biden": biden, "astronaut": astronaut}
    return compose_group(samples), GROUP_LAYOUT


@pytest.fixture(scope="session")
def turned_group(obama, obama2, biden, astronaut) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """Each sample's head turned 60 degrees (both ways), faces 45..100 px wide, on a wall."""
    from masquerade._stages.detect import MeshAnalyser

    samples = {"obama": obama, "obama2": obama2, "biden": biden, "astronaut": astronaut}
    return make_turned_group(samples, MeshAnalyser())
