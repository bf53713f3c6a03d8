"""The Engine protocol: where a run's work happens, and the handle that follows it."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import attrs

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest, RunState
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.job import NodeJob


@attrs.frozen(kw_only=True)
class RunPlan:
    """A run that allocate has written to the store and that an engine should execute."""

    experiment: AnyExperiment
    layout: RunLayout
    store: ArtifactStore
    root: NodeJob
    n_specs: int
    one_off: bool = False
    """A single spec allocated on its own: no tree, the leaf writes final/ itself."""


@attrs.frozen(kw_only=True)
class Progress:
    """A snapshot of a run: its state and how many leaves have finished."""

    state: RunState
    done: int
    failed: int
    total: int
    error: str | None = None

    def __call__(self) -> Progress:
        """``run.progress`` used to be a method: code that calls it gets this same snapshot."""
        return self

    def __str__(self) -> str:
        finished = self.done + self.failed
        text = f"{self.state}: {finished}/{self.total} ({self.done} done, {self.failed} failed)"
        return f"{text}: {self.error}" if self.error else text


@runtime_checkable
class RunHandle(Protocol):
    """A live view of a submitted run."""

    @property
    def engine_run_id(self) -> str | None: ...

    def progress(self, manifest: Manifest | None = None) -> Progress:
        """State and counts now. ``manifest``: the run's manifest when the caller has just
        read it, so that a handle that reads the store does not fetch it a second time."""
        ...

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

    def cancel(self, manifest: Manifest) -> None:
        """Stop what is left of the run ``manifest`` records, before it is resumed or retried:
        an old attempt the engine lost track of must not wake up beside the new one."""
        ...

    def describe(self) -> dict[str, str]:
        """A secret-free description for the manifest; ``kind`` names the engine."""
        ...
