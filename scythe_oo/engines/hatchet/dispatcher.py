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

import numpy as np
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
from scythe_oo.engines.hatchet.spec_rows import row_runs
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.leaf.outcome_table import empty_outcomes, outcome_table
from scythe_oo.runfolder.spec_columns import spec_json
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.job import ROW_COLUMN, NodeJob, NodeResult, OutcomeSink
from scythe_oo.tree.journal import read_batch

SPAWN_CHUNK = 250
"""Children per spawn call, at most. Inside a durable task the SDK sends one message per call,
and Hatchet caps messages at 4 MiB, so a call also carries at most SPAWN_BYTES of inline specs."""

SPAWN_BYTES = 2 * 1024 * 1024

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

MAX_BATCH = 65_536
"""Leaves per task at most: a base node's window (a leaf process holds a batch's specs)."""

INLINE_SPECS = 128
PAYLOAD_BUDGET = 32 * 1024
"""A batch of at most INLINE_SPECS specs and this many bytes of their JSON carries them in
its input, where Hatchet's dashboard shows them; a larger one names rows of its node's specs
file (``spec_rows``) and returns its outcomes as a journal file's key."""

SPLIT_WAYS = 8
"""A batch that gave out as a whole (timed out, lost its worker every try) runs again as this
many smaller ones, down to single specs: only a spec that fails alone is blamed."""

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
        pending = list(
            zip(
                specs.column("sort_index").to_pylist(),
                spec_json(self.cls.schema.input_type, specs),
                specs.column(ROW_COLUMN).to_pylist(),
                strict=True,
            )
        )
        probes, rest = pending[:PROBE_LEAVES], pending[PROBE_LEAVES:]
        outcomes = await self._dispatch(job, [[p] for p in probes], sink)
        batches, start = [], 0
        for size in self._batch_sizes(outcomes, len(rest)):
            batches.append(rest[start : start + size])
            start += size
        return pa.concat_tables([outcomes, await self._dispatch(job, batches, sink)])

    def _batch_sizes(self, probed: pa.Table, n: int) -> list[int]:
        if not n:
            return []
        if not probed.num_rows:
            return [1] * n
        times = sorted(probed.column("wall_time").to_pylist())
        seconds = max(float(times[len(times) // 2]), 1e-6)
        target = max(self.cls.min_batch_seconds, MIN_TASK_SECONDS)
        timeout = Settings.from_env().leaf_timeouts(self.cls.timeouts).execution
        # a batch must finish well inside the task's execution timeout
        by_timeout = int(timeout.total_seconds() / (2 * seconds))
        size = max(1, min(math.ceil(target / seconds), by_timeout, MAX_BATCH))
        return guided_sizes(n, size, math.ceil(TAIL_TASK_SECONDS / seconds))

    async def _dispatch(
        self, job: NodeJob, batches: Sequence[Batch], sink: OutcomeSink
    ) -> pa.Table:
        schema = self.cls.schema

        def item(batch: Batch, tag: str) -> Any:
            first, count = batch[0][0], len(batch)
            fields: dict[str, Any] = {}
            if _inline(batch):
                fields["specs"] = [json.loads(raw) for _, raw, _ in batch]
            else:
                fields["specs_key"] = job.specs_key()
                fields["rows"] = row_runs(np.fromiter((row for _, _, row in batch), np.int64))
            payload = self.leaf_input(
                experiment_id=job.experiment_id,
                store=self.store_description,
                node=job.node,
                generation=job.generation,
                **fields,
            )
            key = self._child_key(job, f"{job.node}/{tag}-{first}-{count}")
            return self.leaf_task.create_bulk_run_item(payload, child_key=key)

        async def run(
            chunk: Sequence[Batch], tag: str, level: int, made_here: list[pa.Table]
        ) -> list[pa.Table]:
            outputs = await self.leaf_task.aio_run_many(
                [item(batch, tag) for batch in chunk], return_exceptions=True
            )
            tables: list[pa.Table] = []
            lost: list[LeafOutcome] = []
            again: list[Batch] = []
            for output, batch in zip(outputs, chunk, strict=True):
                if not isinstance(output, BaseException):
                    tables.append(await self._outcomes(output))
                elif len(batch) == 1:
                    lost.append(_lost_leaf(batch[0][0], output, self.cls.retries))
                else:  # a whole batch gave out (timeout, lost worker): smaller ones tell whose
                    again.extend(_split(batch, SPLIT_WAYS))
            if lost:
                made_here.append(outcome_table(schema, lost))
                tables.append(made_here[-1])
            for part in _spawn_chunks(again):
                tables.extend(await run(part, f"split{level}", level + 1, made_here))
            return tables

        async def one_chunk(chunk: Sequence[Batch]) -> pa.Table:
            made_here: list[pa.Table] = []
            tables = await run(chunk, "leaves", 1, made_here)
            if made_here:
                # The leaves journaled their own outcomes as they ended; what the journal
                # lacks is only the failures made here, for tasks Hatchet gave up on. (Journaling
                # everything again would also count each leaf twice in a run's progress.)
                await sink(pa.concat_tables(made_here))
            return pa.concat_tables([empty_outcomes(schema), *tables])

        gathered = await asyncio.gather(*(one_chunk(c) for c in _spawn_chunks(batches)))
        return pa.concat_tables([empty_outcomes(schema), *gathered])

    async def _outcomes(self, output: Any) -> pa.Table:
        """A leaf task's outcomes as a table: inline, or read from the journal file it names."""
        parsed = as_leaf_output(output)
        schema = self.cls.schema
        if parsed.outcomes_key is None:
            return outcome_table(schema, parsed.outcomes)
        return await asyncio.to_thread(read_batch, self.store, parsed.outcomes_key, schema)


Batch = Sequence[tuple[int, str, int]]
"""A leaf batch: (sort_index, spec JSON, row in the node's specs file) of each of its specs."""


def _inline(batch: Batch) -> bool:
    return len(batch) <= INLINE_SPECS and sum(len(raw) for _, raw, _ in batch) <= PAYLOAD_BUDGET


def _payload_bytes(batch: Batch) -> int:
    return sum(len(raw) for _, raw, _ in batch) if _inline(batch) else 256


def _spawn_chunks(batches: Sequence[Batch]) -> list[list[Batch]]:
    """Batches grouped into spawn calls of at most SPAWN_CHUNK items and SPAWN_BYTES."""
    chunks: list[list[Batch]] = []
    size = SPAWN_BYTES + 1
    for batch in batches:
        weight = _payload_bytes(batch)
        if size + weight > SPAWN_BYTES or len(chunks[-1]) >= SPAWN_CHUNK:
            chunks.append([])
            size = 0
        chunks[-1].append(batch)
        size += weight
    return chunks


def _split(batch: Batch, ways: int) -> list[Batch]:
    step = math.ceil(len(batch) / ways)
    return [batch[i : i + step] for i in range(0, len(batch), step)]


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
