"""LocalEngine: the embedded default. One machine, no server.

The tree runs on an asyncio loop in a background thread of the calling process; leaves run in a
process pool, in batches sized so that each batch runs for at least the experiment's
``min_batch_seconds`` (tiny simulations then pay almost no per-task overhead). Workers are forked
before any thread of ours starts, so experiments defined in a notebook or a script work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import math
import multiprocessing
import operator
import os
import pickle
import socket
import threading
import time
import traceback
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
from pydantic import TypeAdapter

from scythe_oo.collector import spec_json
from scythe_oo.engine.base import Progress, RunHandle, RunPlan
from scythe_oo.gcpause import paused_gc
from scythe_oo.leaf import RunContext, run_specs
from scythe_oo.manifest import Manifest
from scythe_oo.node import (
    NodeJob,
    NodeResult,
    OutcomeSink,
    fail_run,
    finalize_run,
    mark_running,
    run_node,
)
from scythe_oo.outcome import LeafOutcome
from scythe_oo.registry import REGISTRY
from scythe_oo.settings import Settings

if TYPE_CHECKING:
    from scythe_oo.spec import ExperimentInputSpec
    from scythe_oo.store.base import ArtifactStore


_WALL_TIME = operator.attrgetter("wall_time")
_OK = operator.attrgetter("ok")

TAIL_SECONDS = 0.01
"""The shortest batch a node's tail is split into (see ``_LocalDispatcher.batch_size``)."""


def _warm_up() -> int:
    return os.getpid()


def _init_worker(parent: int) -> None:
    """Runs first in every forked pool worker."""
    # Everything inherited from the driver (its modules, the caller's specs, ...) is frozen
    # out of the cyclic collector's reach: a full collection in a worker would otherwise scan
    # the whole copied heap, writing to every page of it (copy-on-write), and took 150-200 ms
    # per worker in a 20,000-leaf run whose leaves took 200 ms in all.
    gc.freeze()
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Pool workers block on their queue forever if the driver is killed with SIGKILL; this
    watchdog ends them instead of leaving orphans that keep files open."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="scythe-parent-watch", daemon=True).start()


@functools.cache
def _spec_list(input_type: type[ExperimentInputSpec]) -> TypeAdapter[list[ExperimentInputSpec]]:
    """A validator for a whole batch of specs: one call instead of one per spec."""
    return TypeAdapter(list[input_type])  # type: ignore[valid-type]


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
    parsed = _spec_list(cls.schema.input_type).validate_json(f"[{','.join(specs)}]")
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


SPLIT_ABOVE = 50_000
"""LocalEngine's default for ``split_above``."""


@attrs.frozen(kw_only=True)
class LocalEngine:
    """Runs everything on this machine with a pool of ``max_workers`` processes (default: one
    per CPU).

    In one process the scatter/gather tree does not spread any work: all it does is bound how
    many specs and outcomes the driver holds at once. So a node splits (as far as the
    experiment's recursion policy allows) only when it holds more than ``split_above`` specs;
    a smaller sweep runs as one node and skips the tree's files altogether. Set it to 0 to
    follow the recursion policy exactly, as HatchetEngine does.
    """

    max_workers: int | None = None
    split_above: int = attrs.field(
        default=SPLIT_ABOVE, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )

    def submit(self, plan: RunPlan) -> LocalRunHandle:
        handle = LocalRunHandle(plan, self.max_workers or os.cpu_count() or 1, self.split_above)
        handle.start()
        return handle

    def attach(self, manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
        return None

    def describe(self) -> dict[str, str]:
        return {
            "kind": "local",
            "max_workers": str(self.max_workers or os.cpu_count() or 1),
            "split_above": str(self.split_above),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
        }


class LocalRunHandle:
    """A run executing in a background thread of this process."""

    def __init__(self, plan: RunPlan, workers: int, split_above: int) -> None:
        self.plan = plan
        self.workers = workers
        self.split_above = split_above
        self.done = 0
        self.failed = 0
        self.state = "queued"
        self.error: str | None = None
        self._finished = threading.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def engine_run_id(self) -> str | None:
        return f"local-{os.getpid()}"

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        # With "fork", the first submit forks every worker at once.
        pool.submit(_warm_up).result()
        return pool

    @property
    def pool(self) -> ProcessPoolExecutor:
        assert self._pool is not None
        return self._pool

    def replace_broken_pool(self, broken: ProcessPoolExecutor) -> None:
        """A worker process died (OOM killer, segfault, kill -9): start a fresh pool, once,
        however many in-flight batches noticed it."""
        with self._pool_lock:
            if self._pool is not broken:
                return
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def start(self) -> None:
        # The first pool is forked here, before our own thread exists, so no child inherits
        # a lock held by a thread of ours. A replacement pool is forked from the run thread.
        self._pool = self._new_pool()
        self._thread = threading.Thread(
            target=self._main, name=f"scythe-run-{self.plan.layout.timestamp}", daemon=False
        )
        self._thread.start()

    def progress(self) -> Progress:
        return Progress(
            state=self.state,
            done=self.done,
            failed=self.failed,
            total=self.plan.n_specs,
            error=self.error,
        )

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def _main(self) -> None:
        plan = self.plan
        assert self._pool is not None
        try:
            self.state = "running"
            mark_running(plan.store, plan.layout, self.engine_run_id)
            dispatcher = _LocalDispatcher(plan, self.workers, self)
            root = asyncio.run(run_node(plan.experiment, plan.root, plan.store, dispatcher))
            manifest = finalize_run(plan.store, plan.layout, root)
            self.state = manifest.status
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            self.state = "failed"
            # The store itself may be what failed; the handle still knows the error.
            with contextlib.suppress(Exception):
                fail_run(plan.store, plan.layout, self.error)
        finally:
            self._pool.shutdown(wait=True)
            self._finished.set()


def _crashed(raw: str, attempts: int, error: BaseException) -> LeafOutcome:
    """The outcome of a spec whose worker process died every time it ran it."""
    sort_index = int(json.loads(raw)["sort_index"])
    return LeafOutcome(
        sort_index=sort_index,
        leaf_id=f"{sort_index:09d}",
        ok=False,
        error_type="WorkerCrashed",
        error_message=(
            f"the worker process died while running this leaf, {attempts} time(s) "
            f"({error}); look for a segfault or the out-of-memory killer"
        ),
        attempts=attempts,
        worker="local",
    )


class _LocalDispatcher:
    """Runs children as coroutines on the loop and leaves as batches in the process pool."""

    def __init__(self, plan: RunPlan, workers: int, handle: LocalRunHandle) -> None:
        self.plan = plan
        self.workers = workers
        self.handle = handle
        cls = plan.experiment
        settings = Settings.from_env()
        execution = cls.timeouts.execution or settings.timeout_experiment_execution
        self.timeout_seconds = execution.total_seconds()
        self.retries = cls.retries
        self.min_batch_seconds = float(cls.min_batch_seconds)
        self.run = RunContext(experiment_id=plan.layout.experiment_id, store=plan.store)
        self.seconds_per_leaf: float | None = None
        # Two batches per worker keep every process busy while the next batch is sized.
        self.slots = asyncio.Semaphore(2 * workers)
        self.active_nodes = asyncio.Semaphore(workers + 1)
        self.suspect = asyncio.Lock()
        """Held while a spec suspected of killing its worker runs alone in the pool."""
        self.pool_changed = asyncio.Condition()
        self.in_flight = 0

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

    async def run_batch(
        self, batch: list[str], crashes: int = 0, alone: bool = False
    ) -> list[LeafOutcome]:
        """Run a batch in the pool. If a worker process dies, every batch in flight fails with
        it, so none of them can tell whose spec killed it: a broken batch is split into single
        specs, and a broken single spec runs again alone in the pool. Only a spec that kills
        its worker while running alone is counted as crashing (and, past its retries,
        reported as WorkerCrashed); the others simply run again."""
        try:
            data = await self._in_pool(batch, alone)
            return _unpickled(data)
        except BrokenProcessPool as exc:
            if len(batch) > 1:
                return [o for raw in batch for o in await self.run_batch([raw])]
            crashes += alone
            if crashes <= self.retries:  # one try more than retries: kills are often external
                return await self.run_batch(batch, crashes, alone=True)
            return [_crashed(batch[0], crashes + 1, exc)]

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
        pool = self.handle.pool
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
            await asyncio.to_thread(self.handle.replace_broken_pool, pool)
            raise
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
