"""The one place that decides which store, engine, recursion policy and collector a run uses.

Precedence, highest first: the argument to ``allocate``; the experiment's class attribute; the
SCYTHE_* settings; the embedded default (LocalStore at ./scythe-data, LocalEngine, the default
RecursionPolicy and ResultCollector). A strategy that would not reach the engine's workers
(a collector defined in a notebook, for a distributed engine) is refused here, before anything
is written.
"""

from __future__ import annotations

from typing import Any

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import StrategyError
from scythe_oo.definition.portable import check_portable
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.engine.protocol import Engine
from scythe_oo.engine.table import create_engine
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import default_store
from scythe_oo.tree.collector import ResultCollector


def _declared(cls: AnyExperiment, slot: str) -> Any:
    """A strategy slot of the public Experiment class (``store``, ``engine``, ``collector``)."""
    return getattr(cls, slot, None)


def _checked(value: Any, kind: type, slot: str) -> Any:
    if not isinstance(value, kind):
        raise StrategyError(f"{slot} must be a {kind.__name__}, got {value!r}")
    return value


def resolve_store(cls: AnyExperiment, store: ArtifactStore | None = None) -> ArtifactStore:
    chosen = store if store is not None else _declared(cls, "store")
    if chosen is None:
        return default_store()
    result: ArtifactStore = _checked(chosen, ArtifactStore, "store")
    return result


def resolve_engine(cls: AnyExperiment, engine: Engine | None = None) -> Engine:
    chosen = engine if engine is not None else _declared(cls, "engine")
    if chosen is None:
        return create_engine()
    result: Engine = _checked(chosen, Engine, "engine")
    return result


def resolve_recursion(
    cls: AnyExperiment, recursion: RecursionPolicy | None = None
) -> RecursionPolicy:
    result: RecursionPolicy = _checked(
        cls.recursion if recursion is None else recursion, RecursionPolicy, "recursion"
    )
    return result


def resolve_collector(
    cls: AnyExperiment, collector: ResultCollector | None = None
) -> ResultCollector:
    chosen = collector if collector is not None else _declared(cls, "collector")
    if chosen is None:
        return ResultCollector()
    result: ResultCollector = _checked(chosen, ResultCollector, "collector")
    return result


def check_strategies_travel(
    engine: Engine, recursion: RecursionPolicy, collector: ResultCollector
) -> None:
    """An engine whose nodes run in other processes rebuilds strategies from their import
    path there; a strategy it could not import is an error now, not on a worker later."""
    if engine.describe().get("kind") == "local":
        return  # every node runs in this process
    check_portable(recursion, "the recursion policy")
    check_portable(collector, "the result collector")
