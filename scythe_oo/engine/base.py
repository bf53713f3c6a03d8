"""The Engine protocol: where a run's work happens.

Like an httpx transport, an engine is small: it accepts a prepared run and hands back a handle
that reports progress. The tree logic lives in scythe_oo.node; an engine only decides how nodes
and leaves are executed (a local process pool, Hatchet tasks, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import attrs

if TYPE_CHECKING:
    from scythe_oo.experiment import Experiment
    from scythe_oo.layout import RunLayout
    from scythe_oo.manifest import Manifest
    from scythe_oo.node import NodeJob
    from scythe_oo.store.base import ArtifactStore


@attrs.frozen(kw_only=True)
class RunPlan:
    """A run that allocate has written to the store and that an engine should execute."""

    experiment: type[Experiment[Any, Any]]
    layout: RunLayout
    store: ArtifactStore
    root: NodeJob
    n_specs: int


@attrs.frozen(kw_only=True)
class Progress:
    """A snapshot of a run: its state and how many leaves have finished."""

    state: str
    done: int
    failed: int
    total: int
    error: str | None = None


@runtime_checkable
class RunHandle(Protocol):
    """A live view of a submitted run."""

    @property
    def engine_run_id(self) -> str | None: ...

    def progress(self) -> Progress: ...

    def join(self, timeout: float | None = None) -> bool:
        """Block until the run ends or ``timeout`` passes; True when it ended."""
        ...


@runtime_checkable
class Engine(Protocol):
    """Executes prepared runs."""

    def submit(self, plan: RunPlan) -> RunHandle: ...

    def attach(self, manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
        """A handle on a run submitted by another process, or None when the engine cannot tell
        more than the store does."""
        ...

    def describe(self) -> dict[str, str]:
        """A secret-free description for the manifest."""
        ...
