"""The local engine's dispatcher: leaves in batches through a process pool, crashes contained.

Batches are sized from the leaves' own measured time so that each runs for about the
experiment's ``min_batch_seconds``: a pool round trip costs tens of microseconds, which a
one-millisecond simulation must not pay per leaf. A worker process that dies takes every batch
in flight with it. The pool knows which batch ran in the process that died: the others run
again whole, the culprit's is split in SPLIT_WAYS parts that run side by side until its
crashing spec runs alone, and only a spec that kills its worker while running alone is blamed
for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Protocol

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.base import REGISTRY
from scythe_oo.definition.settings import Settings
from scythe_oo.engine.protocol import RunPlan
from scythe_oo.engines.local_pool import LeafPool, WorkerDeath, run_marked
from scythe_oo.leaf.execute import RunContext, run_batch
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.leaf.outcome_table import empty_outcomes, outcome_table
from scythe_oo.runfolder.spec_columns import spec_objects
from scythe_oo.tree.job import ROW_COLUMN, NodeJob, NodeResult, OutcomeSink
from scythe_oo.tree.node import run_node


class PoolOwner(Protocol):
    """What the dispatcher needs of the run it serves: the pool, and counters to update."""

    min_batch_seconds: float | None
    done: int
    failed: int
    leaf_pool: LeafPool
    scratch: Path


MAX_ACTIVE_NODES = 8
"""Base nodes running at once, at most: each holds up to two windows of specs and outcomes."""

TAIL_SECONDS = 0.01
"""The shortest batch a node's tail is split into (see ``guided_batch``)."""

SPLIT_WAYS = 8
"""Parts a batch whose process died is split into, all run at once: a crashing spec in a
batch of 50,000 tiny leaves runs alone after five splits, not after 50,000 round trips."""

BYSTANDER_RERUNS = 10
"""How often a batch runs again whole because another batch's process died beside it. A
culprit batch being narrowed down dies once per split, breaking the batches beside it each
time; past this many, a bystander is split as if it were a culprit, in case the pool's
account of who ran where is wrong (it never is for crashes; the kernel's out-of-memory
killer may pick a process that was not the one growing)."""

_TOKENS = itertools.count(1)
log = logging.getLogger(__name__)


@attrs.frozen
class Rows:
    """A batch: rows ``start`` to ``stop`` of a node's specs file (a local Arrow file that
    every worker maps into memory, so a batch travels as three numbers, not as its specs)."""

    path: str
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    def single(self) -> list[Rows]:
        return [Rows(self.path, i, i + 1) for i in range(self.start, self.stop)]

    def pieces(self, size: int) -> list[Rows]:
        return [
            Rows(self.path, i, min(i + size, self.stop)) for i in range(self.start, self.stop, size)
        ]


def guided_batch(
    remaining: int, workers: int, seconds_per_leaf: float | None, min_batch_seconds: float
) -> int:
    """How many of a node's ``remaining`` leaves the next batch takes (guided scheduling).

    About ``min_batch_seconds`` of leaves, so that tiny ones do not pay a pool round trip
    each; but never more than a ``workers``-th of what is left, so that every worker shares
    the end of a window and none runs a batch that the others wait for. (A cap of half of
    what is left, right for 2 workers, had 16 workers wait for one worker's half-window of
    no-op leaves: eight times the window's ideal time.) Nor, at the end, shorter than
    TAIL_SECONDS, whose round trips would cost the driver more than the balance saves."""
    if seconds_per_leaf is None or min_batch_seconds <= 0:
        return 1
    per_leaf = max(seconds_per_leaf, 1e-6)
    wanted = math.ceil(min_batch_seconds / per_leaf)
    share = max(math.ceil(remaining / max(workers, 1)), math.ceil(TAIL_SECONDS / per_leaf))
    return max(1, min(wanted, share, remaining))


def _parts(rows: list[Rows], ways: int) -> list[Rows]:
    """``rows`` (single specs, in order) as about ``ways`` batches of adjacent ones."""
    runs: list[Rows] = []
    for one in rows:
        if runs and runs[-1].stop == one.start:
            runs[-1] = Rows(one.path, runs[-1].start, one.stop)
        else:
            runs.append(one)
    size = math.ceil(len(rows) / ways)
    return [piece for run in runs for piece in run.pieces(size)]


_MAPPED: dict[str, pa.Table] = {}
"""A worker's memory-mapped specs files, the newest few."""


def _specs_file(path: str) -> pa.Table:
    table = _MAPPED.get(path)
    if table is None:
        with pa.memory_map(path) as source:
            table = pa.ipc.open_file(source).read_all()
        while len(_MAPPED) >= 4:
            del _MAPPED[next(iter(_MAPPED))]
        _MAPPED[path] = table
    return table


def run_leaf_batch(
    experiment: str,
    run: RunContext,
    rows: Rows,
    retries: int,
    timeout_seconds: float | None,
) -> bytes:
    """Worker side of a batch: read its rows, make them specs in one call, run them, and send
    the outcome table back as Arrow IPC bytes. The experiment travels by name: a forked worker
    has the parent's registry, so classes defined in a notebook, a script or a function body
    work."""
    cls = REGISTRY.get(experiment)
    worker = f"local-{socket.gethostname()}-{os.getpid()}"
    parsed = spec_objects(cls.schema, _specs_file(rows.path).slice(rows.start, len(rows)))
    table = run_batch(
        cls, parsed, run, retries=retries, worker_name=worker, timeout_seconds=timeout_seconds
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _outcomes(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(data).read_all()


OUTSIDE_KILLS = 5
"""How many times a spec's worker may be killed from outside (SIGKILL or SIGTERM from someone
else, which the spec cannot help) before the spec fails as WorkerKilled rather than run on."""


class BrokenWorker(Exception):
    """A batch's worker process died; ``death`` says why, and whether it was this batch's
    process (the batch's ``token`` is among the culprits) or another's."""

    def __init__(self, death: WorkerDeath, token: int) -> None:
        super().__init__(death.detail)
        self.death = death
        self.bystander = death.culprits is not None and token not in death.culprits


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
        self.active_nodes = asyncio.Semaphore(min(workers + 1, MAX_ACTIVE_NODES))
        self.suspect = asyncio.Lock()
        """Held while a spec suspected of killing its worker runs alone in the pool."""
        self.pool_changed = asyncio.Condition()
        self.in_flight = 0
        self.pool = handle.leaf_pool
        self.deaths: dict[int, dict[str, int]] = {}
        """How often each spec's worker died under it, by kind of death."""
        self.order: dict[str, Any] = {}
        """The sort_index of each row of each specs file in use, to name a crashed spec."""

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
        return job.splits(n_specs)

    def batch_size(self, remaining: int) -> int:
        return guided_batch(remaining, self.workers, self.seconds_per_leaf, self.min_batch_seconds)

    def observe(self, outcomes: pa.Table, elapsed: float) -> None:
        # The leaves' own time, as the workers measured it: the round trip also counts the
        # time a batch queued behind another and would make every later batch too small.
        busy = pc.sum(outcomes.column("wall_time")).as_py() or elapsed
        per_leaf = busy / max(outcomes.num_rows, 1)
        previous = self.seconds_per_leaf
        self.seconds_per_leaf = per_leaf if previous is None else 0.7 * previous + 0.3 * per_leaf
        succeeded = int(pc.sum(outcomes.column("ok")).as_py() or 0)
        self.handle.done += succeeded
        self.handle.failed += outcomes.num_rows - succeeded

    async def run_batch(self, batch: Rows, alone: bool = False, reruns: int = 0) -> pa.Table:
        """Run a batch in the pool, and account for every spec if its worker dies.

        When a worker process dies, every batch in flight fails with it. Those that ran in
        other processes run again whole. In the one whose process died, a spec the pool
        killed for overrunning its timeout is known; the rest runs again in parts, and a
        broken single spec runs again alone in the pool. Only a death while a spec runs alone
        counts against it: a crash or an out-of-memory kill as a try (past its retries it
        fails as WorkerCrashed), a kill from outside not at all, up to OUTSIDE_KILLS of them
        (then WorkerKilled)."""
        try:
            return _outcomes(await self._in_pool(batch, alone))
        except BrokenWorker as broken:
            death = broken.death
            if broken.bystander and reruns < BYSTANDER_RERUNS:
                return await self.run_batch(batch, alone, reruns + 1)
        if len(batch) > 1:
            log.info(
                "a worker process died under a batch of %d specs (%s); it runs again in "
                "parts until the spec at fault runs alone",
                len(batch),
                death.detail,
            )
        outcomes: list[pa.Table] = []
        rest = []
        for one in batch.single():
            overrun = self.pool.take_timeout(self._index_of(one))
            if overrun is None:
                rest.append(one)
            else:
                outcomes.append(await self._after_death(one, "timeout", overrun))
        if len(batch) > 1 or not rest:
            parts = _parts(rest, SPLIT_WAYS)
            outcomes += await asyncio.gather(*(self.run_batch(part) for part in parts))
            return self._concat(outcomes)
        if not alone:  # it may have died of a neighbour: a run alone will tell
            self._count(rest[0], "shared")
            return await self.run_batch(rest[0], alone=True)
        return await self._after_death(rest[0], death.kind, 0.0, death.detail)

    def _index_of(self, rows: Rows) -> int:
        return int(self.order[rows.path][rows.start])

    def _concat(self, tables: list[pa.Table]) -> pa.Table:
        return pa.concat_tables(tables) if tables else empty_outcomes(self.plan.experiment.schema)

    def _failed(self, index: int, error_type: str, message: str, attempts: int) -> pa.Table:
        failure = LeafOutcome.failure(index, error_type, message, attempts=attempts, worker="local")
        return outcome_table(self.plan.experiment.schema, [failure])

    def _count(self, rows: Rows, kind: str) -> tuple[int, dict[str, int]]:
        index = self._index_of(rows)
        counts = self.deaths.setdefault(index, {})
        counts[kind] = counts.get(kind, 0) + 1
        return index, counts

    async def _after_death(
        self, raw: Rows, kind: str, overrun: float, detail: str = ""
    ) -> pa.Table:
        """Count a death against the spec of ``raw``; run it again alone, or report it."""
        index, counts = self._count(raw, kind)
        ran = sum(counts.values())  # every run of it that a dead worker ended
        tries = counts.get("timeout", 0) + counts.get("crash", 0) + counts.get("memory", 0)
        if kind == "outside":
            if counts[kind] < OUTSIDE_KILLS:
                return await self.run_batch(raw, alone=True)
            message = (
                f"its worker process was killed from outside {counts[kind]} times ({detail}); "
                "stop whatever kills the workers, then retry_failed()"
            )
            return self._failed(index, "WorkerKilled", message, ran)
        if tries <= self.retries:
            return await self.run_batch(raw, alone=True)
        if kind == "timeout":
            message = (
                f"the leaf ran {overrun:.1f}s past its execution timeout of "
                f"{self.timeout_seconds:g}s without stopping when interrupted, so its worker "
                f"was killed ({tries} time(s))"
            )
            return self._failed(index, "LeafTimeoutError", message, ran)
        cause = "ran out of memory" if kind == "memory" else "died"
        message = (
            f"the worker process {cause} while running this leaf alone, {tries} time(s) "
            f"({detail}); look for a segfault, a call to exit, or the memory the leaf needs"
        )
        return self._failed(index, "WorkerCrashed", message, ran)

    async def _in_pool(self, batch: Rows, alone: bool) -> bytes:
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

    async def _submit(self, batch: Rows) -> bytes:
        pool, token = self.pool.executor, next(_TOKENS)
        try:
            data: bytes = await asyncio.get_running_loop().run_in_executor(
                pool,
                run_marked,
                token,
                run_leaf_batch,
                self.plan.experiment.name,
                self.run,
                batch,
                self.retries,
                self.timeout_seconds,
            )
        except BrokenProcessPool:
            death = await asyncio.to_thread(self.pool.replace_broken, pool)
            raise BrokenWorker(death, token) from None
        return data

    async def run_leaves(self, job: NodeJob, specs: pa.Table, sink: OutcomeSink) -> pa.Table:
        path = str(self.handle.scratch / f"{uuid.uuid4().hex}.arrow")
        await asyncio.to_thread(_write_specs_file, specs, path)
        self.order[path] = specs.column("sort_index").to_numpy()
        total, cursor = specs.num_rows, 0

        async def lane() -> list[pa.Table]:
            nonlocal cursor
            collected: list[pa.Table] = []
            while True:
                async with self.slots:
                    if cursor >= total:
                        return collected
                    size = self.batch_size(total - cursor)
                    batch = Rows(path, cursor, cursor + size)
                    cursor += size
                    started = time.perf_counter()
                    outcomes = await self.run_batch(batch)
                    self.observe(outcomes, time.perf_counter() - started)
                await sink(outcomes)
                collected.append(outcomes)

        try:
            lanes = await asyncio.gather(*(lane() for _ in range(min(2 * self.workers, total))))
        finally:
            del self.order[path]
            Path(path).unlink(missing_ok=True)
        return self._concat([table for tables in lanes for table in tables])


def _write_specs_file(specs: pa.Table, path: str) -> None:
    """The rows workers read (each spec's JSON or its columns): uncompressed Arrow, which
    they map into memory as it is."""
    table = specs.drop_columns([ROW_COLUMN])
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
