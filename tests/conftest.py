"""Shared test plumbing: one cache folder for every fixture the suite builds itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def cache_root() -> Path:
    """Fixtures built by the suite (images, downloaded Debian kernels) live here, keyed by their inputs."""
    root = Path(os.environ.get("PVBUILD_TEST_CACHE", REPO / ".cache" / "tests"))
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def fixture_cache() -> Path:
    return cache_root()
