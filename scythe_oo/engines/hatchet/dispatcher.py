"""Running a node's children and leaves as Hatchet child runs of the node's durable task.

Leaves go out in batches sized from two probe leaves, so that tiny simulations pay one Hatchet
task per batch instead of one per leaf. Every child run carries a deterministic ``child_key``
(run folder, node path, batch), so a node that is retried or replayed re-attaches to the
children it already spawned instead of spawning them twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
from hatchet_sdk import DurableContext

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.settings import Settings
from scythe_oo.engines.hatchet.payloads import (
    LeafTaskInput,
    NodeTaskInput,
    as_leaf_output,
    as_node_output,
)
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.leaf.outcome_table import empty_outcomes, outcome_table
from scythe_oo.runfolder.specs import spec_json
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.job import NodeJob, NodeResult, OutcomeSink

SPAWN_CHUNK = 250
"""Children per spawn call. Inside a durable task the SDK sends one message per call, and
Hatchet caps messages at 4 MiB; 250 leaf inputs of a few KiB each stay far below that."""

PROBE_LEAVES = 2
"""Leaves each base node runs alone first, to measure how long one leaf takes."""

MIN_TASK_SECONDS = 4.0
"""The shortest a batch of leaves should run. Hatchet assigns a queue's tasks on a tick of
about a second (jittered), so a worker that finishes a shorter batch waits for the next tick
with nothing to do: batches of 0.5 s kept 2 processes busy about a third of the time."""

TAIL_TASK_SECONDS = 1.0
"""The shortest batch at the end of a node's leaves (see ``guided_sizes``): about one tick
of the engine's assignment, or the tail waits for ticks instead of computing (tails of
0.25 s left 1,000 leaves of 20 ms on 2 processes at 18.4 s; of 1 s, at 14.7 s)."""

MAX_BATCH = 128
PAYLOAD_BUDGET = 32 * 1024
"""Bytes of spec JSON per leaf task at most; outputs (~300 bytes per leaf) stay small too."""

INFRASTRUCTURE_RETRIES = 1
"""Extra Hatchet-level attempts for a leaf task, on top of the experiment's ``retries``.

User errors are retried inside the task and reported as failure rows; Hatchet's retries are
for what the task cannot see: a worker killed mid-leaf or a lost heartbeat."""


class HatchetDispatcher:
    """Runs a node's children and leaves as Hatchet child runs of the node's task."""

    def __init__(
        self,
        cls: AnyExperiment,
        store: ArtifactStore,
        store_description: dict[str, str],
        ctx: DurableContext,
        *,
        node_task: Any,
        leaf_task: Any,
        leaf_input: type[LeafTaskInput],
    ) -> None:
        self.cls = cls
        self.store = store
        self.store_description = store_description
        self.ctx = ctx
        self.node_task = node_task
        self.leaf_task = leaf_task
        self.leaf_input = leaf_input

    def admission(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return contextlib.nullcontext()  # each node is its own task; workers bound them

    def splits(self, job: NodeJob, n_specs: int) -> bool:
        return job.splits(n_specs)

    def leaf_plan_key(self, job: NodeJob) -> str | None:
        # One plan per node task run: retries and durable replays of this run share it; a
        # resumed run (new task runs) plans afresh from the journal.
        return job.layout.leaf_plan(job.node, str(self.ctx.step_run_id))

    def _child_key(self, job: NodeJob, suffix: str) -> str:
        # run folder + node path + index (+ generation, so retry_failed spawns afresh)
        return f"{job.experiment_id}|{suffix}|g{job.generation}"

    async def run_nodes(self, jobs: Sequence[NodeJob]) -> list[NodeResult]:
        task = self.node_task
        items = [
            task.create_bulk_run_item(
                NodeTaskInput.of(job, self.store_description),
                child_key=self._child_key(job, job.node),
            )
            for job in jobs
        ]
        results: list[NodeResult] = []
        for chunk in _chunks(items, SPAWN_CHUNK):
            outputs = await task.aio_run_many(chunk)
            results.extend(as_node_output(o).node_result() for o in outputs)
        return results

    async def run_leaves(self, job: NodeJob, specs: pa.Table, sink: OutcomeSink) -> pa.Table:
        """Probe how long one leaf takes, then dispatch the rest in batches of a few seconds
        each, smaller towards the end: tiny simulations then pay one Hatchet task per batch
        instead of one per leaf, and the last batches even out the workers' finishing times.
        Batch sizes follow from the probes' recorded times, so a retried node computes the
        same batches and re-attaches to them."""
        pending = list(zip(specs.column("sort_index").to_pylist(), spec_json(specs), strict=True))
        probes, rest = pending[:PROBE_LEAVES], pending[PROBE_LEAVES:]
        outcomes = await self._dispatch(job, [[p] for p in probes], sink)
        batches, start = [], 0
        for size in self._batch_sizes(outcomes, rest):
            batches.append(rest[start : start + size])
            start += size
        return pa.concat_tables([outcomes, await self._dispatch(job, batches, sink)])

    def _batch_sizes(self, probed: pa.Table, rest: Sequence[tuple[int, str]]) -> list[int]:
        if not rest:
            return []
        if not probed.num_rows:
            return [1] * len(rest)
        times = sorted(probed.column("wall_time").to_pylist())
        seconds = max(float(times[len(times) // 2]), 1e-3)
        target = max(self.cls.min_batch_seconds, MIN_TASK_SECONDS)
        timeout = Settings.from_env().leaf_timeouts(self.cls.timeouts).execution
        # a batch must finish well inside the task's execution timeout, and its input and
        # output must stay small (a few dozen KiB) whatever the sweep size
        by_timeout = int(timeout.total_seconds() / (2 * seconds))
        by_payload = max(1, PAYLOAD_BUDGET // max(len(raw) for _, raw in rest))
        size = max(1, min(math.ceil(target / seconds), by_timeout, by_payload, MAX_BATCH))
        return guided_sizes(len(rest), size, math.ceil(TAIL_TASK_SECONDS / seconds))

    async def _dispatch(
        self, job: NodeJob, batches: Sequence[Sequence[tuple[int, str]]], sink: OutcomeSink
    ) -> pa.Table:
        task = self.leaf_task
        input_model = self.leaf_input

        def item(batch: Sequence[tuple[int, str]], tag: str) -> Any:
            first, count = batch[0][0], len(batch)
            return task.create_bulk_run_item(
                input_model(
                    experiment_id=job.experiment_id,
                    store=self.store_description,
                    node=job.node,
                    generation=job.generation,
                    specs=[json.loads(raw) for _, raw in batch],
                ),
                child_key=self._child_key(job, f"{job.node}/{tag}-{first}-{count}"),
            )

        async def one_chunk(chunk: Sequence[Sequence[tuple[int, str]]]) -> pa.Table:
            outputs = await task.aio_run_many(
                [item(batch, "leaves") for batch in chunk], return_exceptions=True
            )
            outcomes: list[LeafOutcome] = []
            lost: list[Sequence[tuple[int, str]]] = []
            for output, batch in zip(outputs, chunk, strict=True):
                if not isinstance(output, BaseException):
                    outcomes.extend(as_leaf_output(output).outcomes)
                elif len(batch) == 1:
                    outcomes.append(_lost_leaf(batch[0][0], output, self.cls.retries))
                else:  # a whole batch gave out (timeout, lost worker): account per spec
                    lost.extend([one] for one in batch)
            if lost:
                alone = await task.aio_run_many(
                    [item(batch, "alone") for batch in lost], return_exceptions=True
                )
                for output, batch in zip(alone, lost, strict=True):
                    if isinstance(output, BaseException):
                        outcomes.append(_lost_leaf(batch[0][0], output, self.cls.retries))
                    else:
                        outcomes.extend(as_leaf_output(output).outcomes)
            table = outcome_table(self.cls.schema, outcomes)
            await sink(table)
            return table

        gathered = await asyncio.gather(*(one_chunk(c) for c in _chunks(batches, SPAWN_CHUNK)))
        return pa.concat_tables([empty_outcomes(self.cls.schema), *gathered])


def guided_sizes(n: int, size: int, smallest: int) -> list[int]:
    """Batch sizes for ``n`` leaves: ``size`` each, then, once fewer than four batches' worth
    are left, a quarter of what is left each time, down to ``smallest`` (guided scheduling).
    Hatchet hands tasks out in the order they were spawned, so the small ones come last and
    fill the gaps while the big ones finish."""
    sizes, left = [], n
    while left > 0:
        step = max(1, min(size, max(smallest, math.ceil(left / 4)), left))
        sizes.append(step)
        left -= step
    return sizes


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _lost_leaf(sort_index: int, error: BaseException, retries: int) -> LeafOutcome:
    """A leaf task that Hatchet gave up on (timeout, cancelled, worker lost on every try)."""
    return LeafOutcome.failure(
        sort_index,
        type(error).__name__,
        str(error),
        attempts=retries + INFRASTRUCTURE_RETRIES + 1,
    )
