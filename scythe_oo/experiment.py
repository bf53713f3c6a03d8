"""Experiment: the class researchers subclass to describe one simulation, and launch it.

``ExperimentBase`` (in the definition layer) holds the settings and the hooks that run on
workers; this class adds what runs in the researcher's own process: ``allocate``, ``resume``,
``runs``, ``latest_run``, ``debug`` and ``results`` (across versions), and the strategy slots
for where bytes live (``store``), where work runs (``engine``) and how outcomes become tables
(``collector``). A worker imports the same class, but only ever calls the hooks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar, Generic

import pandas as pd

from scythe_oo.definition.base import ExperimentBase, InputT, OutputT
from scythe_oo.definition.checks import fail
from scythe_oo.definition.cpus import usable_cpus
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.driver.allocate import allocate_run
from scythe_oo.driver.compare import results_across
from scythe_oo.driver.estimate import Estimate, estimate_sweep
from scythe_oo.driver.replay import LeafRun, debug_leaf
from scythe_oo.driver.resolve import resolve_store
from scythe_oo.driver.run import ExperimentRun, list_runs
from scythe_oo.engine.protocol import Engine
from scythe_oo.engines.local import LocalEngine
from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import ResultCollector

_SLOTS: dict[str, type] = {"store": ArtifactStore, "engine": Engine, "collector": ResultCollector}


class Experiment(ExperimentBase[InputT, OutputT], Generic[InputT, OutputT]):
    """One simulation, run over many specs. Subclass it and override ``run``.

    Class attributes configure how it runs; each may be overridden in the subclass body.
    """

    store: ClassVar[ArtifactStore | None] = None
    """Where run folders live. None: S3Store if SCYTHE_STORAGE_BUCKET is set, else ./scythe-data."""

    engine: ClassVar[Engine | None] = None
    """Where work runs. None: the embedded LocalEngine."""

    collector: ClassVar[ResultCollector | None] = None
    """How leaf outcomes become tables. None: the default ResultCollector."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for slot, kind in _SLOTS.items():
            value = cls.__dict__.get(slot)
            if value is not None and not isinstance(value, kind):
                fail(cls, f"{slot} must be a {kind.__name__} or None, got {value!r}")

    @classmethod
    def allocate(
        cls,
        specs: InputT | Iterable[Any] | str | os.PathLike[str],
        *,
        version: str | SemVer | None = None,
        store: ArtifactStore | None = None,
        engine: Engine | None = None,
        recursion: RecursionPolicy | None = None,
        collector: ResultCollector | None = None,
    ) -> ExperimentRun:
        """Validate ``specs``, write a versioned run folder and start the run.

        ``specs`` is one spec (a one-off run), or many: a sequence, a generator, chunks of
        specs (as ``MyInput.sample(..., chunk_size=...)`` yields), a DataFrame with one row
        per spec, or a path to a .pq, .csv or .jsonl file. They are read a chunk at a time, so
        a sweep need not fit in memory. Nothing is written unless every spec is valid and
        storable, and the caller's objects are not modified. Returns at once; call
        ``.wait()`` on the result to block.
        """
        return allocate_run(
            cls,
            specs,
            version=version,
            store=store,
            engine=engine,
            recursion=recursion,
            collector=collector,
        )

    @classmethod
    def estimate(
        cls,
        specs: Any,
        *,
        pilot: int = 50,
        workers: int | None = None,
        cost_per_core_hour: float | None = None,
        seed: int = 0,
        pilot_workers: int | None = None,
        progress: bool | None = None,
    ) -> Estimate:
        """Run ``pilot`` specs drawn at random from ``specs`` here, and project the sweep.

        Reports each leaf's wall time (median, p90, max), peak memory and the failure rate,
        then projects the wall time on ``workers`` workers (default: this machine's CPUs),
        the core-hours and, given ``cost_per_core_hour``, the cost; and suggests
        ``min_batch_seconds`` and a timeout. ``print()`` the result. The pilot runs on
        ``pilot_workers`` local processes (default: one per CPU), one leaf per batch, in a
        temporary store: it writes no run folder and bumps no version.
        """
        engine = LocalEngine(max_workers=pilot_workers, min_batch_seconds=0.0)
        return estimate_sweep(
            cls,
            specs,
            pilot=pilot,
            workers=workers or usable_cpus(),
            cost_per_core_hour=cost_per_core_hour,
            seed=seed,
            engine=engine,
            progress=progress,
        )

    @classmethod
    def debug(
        cls,
        spec: InputT | dict[str, Any],
        *,
        pdb: bool = False,
        scratch: str | os.PathLike[str] | None = None,
    ) -> LeafRun:
        """Run one spec here, in this process, through the hooks a worker calls (setup,
        fetch_inputs, run, output checks, publish_outputs), so ``breakpoint()`` in ``run``
        stops and ``ctx.log`` lines print. Nothing is allocated: output files and tables go to
        a scratch folder (``scratch``, or a new temporary one). ``pdb`` opens the post-mortem
        debugger if the leaf raises. Returns the values or the error, and the log."""
        return debug_leaf(cls, spec, pdb=pdb, scratch=None if scratch is None else Path(scratch))

    @classmethod
    def results(
        cls,
        versions: Iterable[str | SemVer] | str | SemVer | None = None,
        *,
        table: str = "scalars",
        store: ArtifactStore | None = None,
    ) -> pd.DataFrame:
        """One table over several versions: ``table`` of the newest finished run of each of
        ``versions`` (default: every version that has one), with a ``version`` index level in
        front, so versions line up input by input (``df.unstack("version")``)."""
        return results_across(cls.name, resolve_store(cls, store), versions, table)

    @classmethod
    def resume(cls, uri: str, *, engine: Engine | None = None) -> ExperimentRun:
        """Continue the interrupted run whose folder is ``uri``."""
        return ExperimentRun.open(uri).resume(engine=engine)

    @classmethod
    def runs(cls, *, store: ArtifactStore | None = None) -> list[ExperimentRun]:
        """Every run of this experiment in the store, newest first."""
        return list_runs(cls, resolve_store(cls, store))

    @classmethod
    def latest_run(cls, *, store: ArtifactStore | None = None) -> ExperimentRun:
        """The newest run of this experiment; LookupError when there is none."""
        found = cls.runs(store=store)
        if not found:
            raise LookupError(f"{cls.name} has no runs yet in this store")
        return found[0]
