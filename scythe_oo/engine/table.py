"""The name table of engines, as Metaflow keeps its plugins.

Engines live above the driver and the Hatchet engine pulls in hatchet_sdk, so the layers below
find an engine by its kind (as a manifest or ``--engine`` names it) and import it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from scythe_oo.engine.protocol import Engine

ENGINES: dict[str, str] = {
    "local": "scythe_oo.engines.local:LocalEngine",
    "hatchet": "scythe_oo.engines.hatchet.engine:HatchetEngine",
}
"""Engine kinds and their classes; a class is built with no arguments for its defaults."""

DEFAULT_ENGINE = "local"


def engine_class(kind: str) -> Any:
    """The class of an engine kind, imported on first use."""
    try:
        path = ENGINES[kind]
    except KeyError:
        known = ", ".join(sorted(ENGINES))
        raise ValueError(f"unknown engine {kind!r}; known engines: {known}") from None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def create_engine(kind: str = DEFAULT_ENGINE) -> Engine:
    """An engine of ``kind`` with its default settings."""
    engine: Engine = engine_class(kind)()
    return engine
