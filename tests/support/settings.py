"""Pytest plugin: a clean SCYTHE_* environment for tests of settings and their resolution."""

from __future__ import annotations

import pytest

SCYTHE_VARS = (
    "SCYTHE_STORAGE_BUCKET",
    "SCYTHE_STORAGE_BUCKET_PREFIX",
    "SCYTHE_LOCAL_ROOT",
    "SCYTHE_TIMEOUT_SCATTER_GATHER_SCHEDULE",
    "SCYTHE_TIMEOUT_SCATTER_GATHER_EXECUTION",
    "SCYTHE_TIMEOUT_EXPERIMENT_SCHEDULE",
    "SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SCYTHE_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
