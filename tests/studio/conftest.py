"""Studio fixtures: small media, an in-process app (no workers) and one real server per session."""

from __future__ import annotations

from pathlib import Path

import pytest
from studiokit import ServerProcess, make_media


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> dict[str, Path]:
    return make_media(tmp_path_factory.mktemp("studio-media"))


@pytest.fixture(scope="session")
def server(tmp_path_factory, _private_home):
    """One ``masquerade serve`` process (one worker) shared by the job and browser tests."""
    process = ServerProcess(tmp_path_factory.mktemp("studio-data"))
    yield process
    assert process.stop() == 0
