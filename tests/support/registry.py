"""Pytest plugin: an isolated experiment registry for tests that define experiment classes.

Every Experiment subclass registers itself under its name when its ``class`` statement runs.
A test that defines classes inside its body uses ``isolated_registry``: it starts with an
empty registry, and whatever it registers is forgotten when it ends (the registry as it was
comes back), so tests can use plain names without colliding with each other or with the
experiments other test modules import.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scythe_oo import REGISTRY


@pytest.fixture
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(REGISTRY, "_by_name", {})
    yield
