"""The local engine's dispatcher: leaves in batches through a process pool, crashes contained.

Batches are sized from the leaves' own measured time so that each runs for about the
experiment's ``min_batch_seconds``: a pool round trip costs tens of microseconds, which a
one-millisecond simulation must not pay per leaf. A worker process that dies takes every batch
in flight with it, so a broken batch is split and its specs run again, and only a spec that
kills its worker while running alone is blamed for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import operator
import os
import pickle
import socket
import time
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

import pyarrow as pa

from scythe_oo.definition.base import REGISTRY
from scythe_oo.definition.settings import Settings
from scythe_oo.engine.protocol import RunPlan
from scythe_oo.engines.local_pool import LeafPool, WorkerDeath
from scythe_oo.leaf.execute import RunContext, run_specs
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.runfolder.specs import spec_json
from scythe_oo.tree.gcpause import paused_gc
from scythe_oo.tree.job import NodeJob, NodeResult, OutcomeSink
from scythe_oo.tree.node import run_node

_WALL_TIME = operator.attrgetter("wall_time")
_OK = operator.attrgetter("ok")


class PoolOwner(Protocol):
    """What the dispatcher needs of the run it serves: the pool, and counters to update."""

    split_above: int
    min_batch_seconds: float | None
    done: int
    failed: int
    leaf_pool: LeafPool


TAIL_SECONDS = 0.01
"""The shortest batch a node's tail is split into (see ``LocalDispatcher.batch_size``)."""


def run_leaf_batch(
    experiment: str,
    run: RunContext,
    specs: Sequence[str],
    retries: int,
    timeout_seconds: float | None,
) -> bytes:
    """Worker side of a batch. The experiment travels by name: a forked worker has the
    parent's registry, so classes defined in a notebook, a script or a function body work.

    The outcomes come back pickled, for ``_unpickled`` to rebuild in the driver."""
    cls = REGISTRY.get(experiment)
    worker = f"local-{socket.gethostname()}-{os.getpid()}"
    parsed = cls.schema.spec_list.validate_json(f"[{','.join(specs)}]")
    outcomes = run_specs(
        cls, parsed, run, retries=retries, worker_name=worker, timeout_seconds=timeout_seconds
    )
    return pickle.dumps(outcomes, protocol=pickle.HIGHEST_PROTOCOL)


def _unpickled(data: bytes) -> list[LeafOutcome]:
    """A batch's outcomes, rebuilt with the cyclic collector paused.

    Unpickled by the pool itself, thousands of outcomes per second would count towards the
    collector's schedule and set off full collections of the driver's whole heap (the
    caller's specs included), 50-80 ms each in a 20,000-leaf run. Outcomes hold no cycles.
    """
    with paused_gc():
        outcomes: list[LeafOutcome] = pickle.loads(data)
    return outcomes


OUTSIDE_KILLS = 5
"""How many times a spec's worker may be killed from outside (SIGKILL or SIGTERM from someone
else, which the spec cannot help) before the spec fails as WorkerKilled rather than run on."""


class BrokenWorker(Exception):
    """A batch's worker process died; ``death`` says why."""

    def __init__(self, death: WorkerDeath) -> None:
        super().__init__(death.detail)
        self.death = death


def _index_of(raw: str) -> int:
    return int(json.loads(raw)["sort_index"])


class LocalDispatcher:
    """Runs children as coroutines on the loop and leaves as batches in the process pool."""

    def __init__(self, plan: RunPlan, workers: int, handle: PoolOwner) -> None:
        self.plan = plan
        self.workers = workers
        self.handle = handle
        cls = plan.experiment
        settings = Settings.from_env()
        self.timeout_seconds = settings.leaf_timeouts(cls.timeouts).execution.total_seconds()
        self.retries = cls.retries
        override = handle.min_batch_seconds
        self.min_batch_seconds = float(cls.min_batch_seconds if override is None else override)
        self.run = RunContext(experiment_id=plan.layout.experiment_id, store=plan.store)
        self.seconds_per_leaf: float | None = None
        # Two batches per worker keep every process busy while the next batch is sized.
        self.slots = asyncio.Semaphore(2 * workers)
        self.active_nodes = asyncio.Semaphore(workers + 1)
        self.suspect = asyncio.Lock()
        """Held while a spec suspected of killing its worker runs alone in the pool."""
        self.pool_changed = asyncio.Condition()
        self.in_flight = 0
        self.pool = handle.leaf_pool
        self.deaths: dict[int, dict[str, int]] = {}
        """How often each spec's worker died under it, by kind of death."""

    async def run_nodes(self, jobs: Sequence[NodeJob]) -> list[NodeResult]:
        return list(
            await asyncio.gather(
                *(run_node(self.plan.experiment, j, self.plan.store, self) for j in jobs)
            )
        )

    def admission(self) -> contextlib.AbstractAsyncContextManager[Any]:
        # Only a few base nodes hold their specs and outcomes at once, so the driver's memory
        # stays flat as the sweep grows.
        return self.active_nodes

    def leaf_plan_key(self, job: NodeJob) -> str | None:
        return None  # nothing replays a local node: the journal alone decides

    def splits(self, job: NodeJob, n_specs: int) -> bool:
        return n_specs > self.handle.split_above and job.recursion.splits(job.depth, n_specs)

    def batch_size(self, remaining: int) -> int:
        if self.seconds_per_leaf is None or self.min_batch_seconds <= 0:
            return 1
        per_leaf = max(self.seconds_per_leaf, 1e-6)
        wanted = math.ceil(self.min_batch_seconds / per_leaf)
        # Never more than half of what is left, so a node's tail is shared by two lanes; but
        # not split into batches shorter than TAIL_SECONDS either, whose round trips through
        # the pool would cost the driver more than the better balance saves.
        tail = max(math.ceil(remaining / 2), math.ceil(TAIL_SECONDS / per_leaf))
        return max(1, min(wanted, tail, remaining))

    def observe(self, outcomes: Sequence[LeafOutcome], elapsed: float) -> None:
        # The leaves' own time, as the workers measured it: the round trip also counts the
        # time a batch queued behind another and would make every later batch too small.
        busy = sum(map(_WALL_TIME, outcomes)) or elapsed
        per_leaf = busy / max(len(outcomes), 1)
        previous = self.seconds_per_leaf
        self.seconds_per_leaf = per_leaf if previous is None else 0.7 * previous + 0.3 * per_leaf
        succeeded = sum(map(_OK, outcomes))
        self.handle.done += succeeded
        self.handle.failed += len(outcomes) - succeeded

    async def run_batch(self, batch: list[str], alone: bool = False) -> list[LeafOutcome]:
        """Run a batch in the pool, and account for every spec if its worker dies.

        When a worker process dies, every batch in flight fails with it, so none of them can
        tell whose spec killed it. A spec the pool killed for overrunning its timeout is known;
        the others of a broken batch run again one by one, and a broken single spec runs again
        alone in the pool. Only a death while a spec runs alone counts against it: a crash or
        an out-of-memory kill as a try (past its retries it fails as WorkerCrashed), a kill
        from outside not at all, up to OUTSIDE_KILLS of them (then WorkerKilled)."""
        try:
            data = await self._in_pool(batch, alone)
            return _unpickled(data)
        except BrokenWorker as broken:
            death = broken.death
        outcomes: list[LeafOutcome] = []
        rest = []
        for raw in batch:
            overrun = self.pool.take_timeout(_index_of(raw))
            if overrun is None:
                rest.append(raw)
            else:
                outcomes.extend(await self._after_death(raw, "timeout", overrun))
        if len(batch) > 1 or not rest:
            for raw in rest:
                outcomes.extend(await self.run_batch([raw]))
            return outcomes
        if not alone:  # it may have died of a neighbour: a run alone will tell
            self._count(rest[0], "shared")
            return await self.run_batch(rest, alone=True)
        return await self._after_death(rest[0], death.kind, 0.0, death.detail)

    def _count(self, raw: str, kind: str) -> tuple[int, dict[str, int]]:
        index = _index_of(raw)
        counts = self.deaths.setdefault(index, {})
        counts[kind] = counts.get(kind, 0) + 1
        return index, counts

    async def _after_death(
        self, raw: str, kind: str, overrun: float, detail: str = ""
    ) -> list[LeafOutcome]:
        """Count a death against the spec ``raw``; run it again alone, or report it."""
        index, counts = self._count(raw, kind)
        ran = sum(counts.values())  # every run of it that a dead worker ended
        tries = counts.get("timeout", 0) + counts.get("crash", 0) + counts.get("memory", 0)
        if kind == "outside":
            if counts[kind] < OUTSIDE_KILLS:
                return await self.run_batch([raw], alone=True)
            message = (
                f"its worker process was killed from outside {counts[kind]} times ({detail}); "
                "stop whatever kills the workers, then retry_failed()"
            )
            return [LeafOutcome.failure(index, "WorkerKilled", message, attempts=ran)]
        if tries <= self.retries:
            return await self.run_batch([raw], alone=True)
        if kind == "timeout":
            message = (
                f"the leaf ran {overrun:.1f}s past its execution timeout of "
                f"{self.timeout_seconds:g}s without stopping when interrupted, so its worker "
                f"was killed ({tries} time(s))"
            )
            return [LeafOutcome.failure(index, "LeafTimeoutError", message, attempts=ran)]
        cause = "ran out of memory" if kind == "memory" else "died"
        message = (
            f"the worker process {cause} while running this leaf alone, {tries} time(s) "
            f"({detail}); look for a segfault, a call to exit, or the memory the leaf needs"
        )
        return [LeafOutcome.failure(index, "WorkerCrashed", message, attempts=ran)]

    async def _in_pool(self, batch: list[str], alone: bool) -> bytes:
        """Submit a batch; ``alone`` waits for the pool to drain and keeps others out."""
        if alone:
            try:
                async with self.suspect:
                    async with self.pool_changed:
                        await self.pool_changed.wait_for(lambda: self.in_flight == 0)
                    return await self._submit(batch)
            finally:  # after the lock is released: the batches held back may go
                async with self.pool_changed:
                    self.pool_changed.notify_all()
        async with self.pool_changed:
            await self.pool_changed.wait_for(lambda: not self.suspect.locked())
            self.in_flight += 1
        try:
            return await self._submit(batch)
        finally:
            async with self.pool_changed:
                self.in_flight -= 1
                self.pool_changed.notify_all()

    async def _submit(self, batch: list[str]) -> bytes:
        pool = self.pool.executor
        try:
            data: bytes = await asyncio.get_running_loop().run_in_executor(
                pool,
                run_leaf_batch,
                self.plan.experiment.name,
                self.run,
                batch,
                self.retries,
                self.timeout_seconds,
            )
        except BrokenProcessPool:
            death = await asyncio.to_thread(self.pool.replace_broken, pool)
            raise BrokenWorker(death) from None
        return data

    async def run_leaves(
        self, job: NodeJob, specs: pa.Table, sink: OutcomeSink
    ) -> list[LeafOutcome]:
        pending = spec_json(specs)
        cursor = 0

        async def lane() -> list[LeafOutcome]:
            nonlocal cursor
            collected: list[LeafOutcome] = []
            while True:
                async with self.slots:
                    if cursor >= len(pending):
                        return collected
                    size = self.batch_size(len(pending) - cursor)
                    batch = pending[cursor : cursor + size]
                    cursor += size
                    started = time.perf_counter()
                    outcomes = await self.run_batch(batch)
                    self.observe(outcomes, time.perf_counter() - started)
                await sink(outcomes)
                collected.extend(outcomes)

        width = min(2 * self.workers, len(pending))
        lanes = await asyncio.gather(*(lane() for _ in range(width)))
        return [outcome for lane_outcomes in lanes for outcome in lane_outcomes]
