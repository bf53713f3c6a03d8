"""A base node: the node that runs leaves instead of children, in windows of bounded size.

However a recursion policy shapes the tree, a base node may hold 10^6 specs (a policy of factor
10 and depth 1 on 10^7, say). Holding all of them, their outcomes and their tables at once would
tie the driver's memory to the sweep's size, so a large base node runs its specs a window at a
time: each window's leaves run, and its tables are appended to the node's (``window_tables``).
The last window's tables are written while a window's leaves run. A node that fits one window
(nearly every node) writes its tables directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.definition.settings import Settings
from scythe_oo.runfolder.tables import open_parquet, read_table
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import NodeTables
from scythe_oo.tree.gcpause import paused_gc
from scythe_oo.tree.job import ROW_COLUMN, Dispatcher, NodeJob, NodeResult
from scythe_oo.tree.journal import LeafJournal
from scythe_oo.tree.node_tables import write_node
from scythe_oo.tree.window_tables import WindowTables

WINDOW_ROWS = 65_536
"""Specs a base node runs at once. A window of the 10-input benchmark's specs, with their
outcomes and tables, is some tens of MiB in the driver."""

READ_AHEAD_BYTES = 16 * 2**20
"""A window of specs up to this size is followed by the next one, read while it runs: reading
65,536 plain specs takes 20-50 ms, in which every worker would wait. Larger windows (specs kept
as JSON) are read when their turn comes; reading them ahead had a 10^7 run peak at 1.1 GiB."""


async def run_base_node(
    cls: AnyExperiment, job: NodeJob, n_specs: int, store: ArtifactStore, dispatcher: Dispatcher
) -> NodeResult:
    """Run the node's leaves (only those its journal does not hold) and store its tables."""
    journal = LeafJournal(
        store,
        job.layout,
        job.node,
        cls.schema,
        job.generation,
        max_seconds=Settings.from_env().journal_seconds,
    )
    settled = await asyncio.to_thread(journal.settled)
    if n_specs <= WINDOW_ROWS:
        specs = await asyncio.to_thread(read_table, store, job.specs_key())
        pinned = await _pinned(store, job, dispatcher, specs.column("sort_index"), settled)
        outcomes = await _run_window(job, specs, 0, settled, pinned, journal, dispatcher)
        await _settle_journal(journal, _any_failed(outcomes))
        tables = await asyncio.to_thread(_tables, cls, job, specs, outcomes, store)
        return await asyncio.to_thread(write_node, store, job, tables, True)

    with open_parquet(store, job.specs_key()) as parquet:
        rows = await asyncio.to_thread(parquet.read, columns=["sort_index"])
        pinned = await _pinned(store, job, dispatcher, rows.column("sort_index"), settled)
        del rows
        windows = parquet.iter_batches(batch_size=WINDOW_ROWS)
        written = WindowTables(store, job)
        writing: asyncio.Task[None] | None = None
        reading: asyncio.Task[pa.RecordBatch | None] | None = None
        failed = False
        offset = 0
        try:
            for number in itertools.count():
                batch = await (reading or asyncio.to_thread(next, windows, None))
                reading = None
                if batch is None:
                    break
                if batch.nbytes <= READ_AHEAD_BYTES:
                    reading = asyncio.create_task(asyncio.to_thread(next, windows, None))
                specs = pa.Table.from_batches([batch])
                outcomes = await _run_window(
                    job, specs, offset, settled, pinned, journal, dispatcher
                )
                offset += specs.num_rows
                failed = failed or _any_failed(outcomes)
                if writing is not None:  # one window's tables at a time wait to be written
                    await writing
                writing = asyncio.create_task(
                    asyncio.to_thread(_append, cls, job, number, specs, outcomes, store, written)
                )
            if writing is not None:
                await writing
        except BaseException:
            # Let the window in progress finish with the files before they are dropped, and
            # the window being read with the specs file before it closes.
            for task in (writing, reading):
                if task is not None:
                    with contextlib.suppress(BaseException):
                        await task
            written.discard()
            raise
    await _settle_journal(journal, failed)
    return await asyncio.to_thread(written.finish, True)


async def _pinned(
    store: ArtifactStore,
    job: NodeJob,
    dispatcher: Dispatcher,
    node_rows: pa.ChunkedArray,
    settled: pa.Table,
) -> pa.Array | None:
    """The leaves this execution of the node dispatches: those the journal does not hold
    (None: every one, so that a fresh node of 10^6 specs builds no set of them per window).
    A durable engine replays a node's execution, so it pins the set on its first pass."""
    plan_key = dispatcher.leaf_plan_key(job)
    if plan_key is not None:
        pinned = await asyncio.to_thread(_load_plan, store, plan_key)
        if pinned is not None:
            return pa.array(sorted(pinned), type=pa.int64())
    elif not settled.num_rows:
        return None
    done = pc.is_in(node_rows, value_set=settled.column("sort_index"))
    pending = pc.filter(node_rows, pc.invert(done)).combine_chunks()
    if plan_key is not None:
        await asyncio.to_thread(_save_plan, store, plan_key, pending.to_pylist())
    return pending.cast(pa.int64())


async def _run_window(
    job: NodeJob,
    specs: pa.Table,
    offset: int,
    settled: pa.Table,
    pinned: pa.Array | None,
    journal: LeafJournal,
    dispatcher: Dispatcher,
) -> pa.Table:
    """Every outcome of the window's specs, one row each: from the journal where it holds
    one and this execution did not pin it, else from running the leaf (journaled as it ends).
    The window starts at row ``offset`` of the node's specs file; the leaves to run carry
    their row numbers (``ROW_COLUMN``), so that a dispatcher can name them without reading
    the file again."""
    rows = pa.array(np.arange(offset, offset + specs.num_rows, dtype=np.int64))
    numbered = specs.append_column(ROW_COLUMN, rows)
    keep, pending = await asyncio.to_thread(_split_window, numbered, settled, pinned)
    parts = [keep]
    if pending.num_rows:

        async def sink(outcomes: pa.Table) -> None:
            await asyncio.to_thread(journal.record, outcomes)

        parts.append(await dispatcher.run_leaves(job, pending, sink))
    return pa.concat_tables(parts, promote_options="permissive")


def _split_window(
    specs: pa.Table, settled: pa.Table, pinned: pa.Array | None
) -> tuple[pa.Table, pa.Table]:
    """The journal's outcomes this window keeps, and the specs it runs. A fresh window runs
    every spec, and is not copied to find that out (a window's JSON is tens of MiB)."""
    if pinned is None:
        return settled.slice(0, 0), specs
    rows = specs.column("sort_index")
    known = settled.column("sort_index")
    keep = pc.filter(
        settled,
        pc.and_(pc.is_in(known, value_set=rows), pc.invert(pc.is_in(known, value_set=pinned))),
    )
    chosen = pc.is_in(rows, value_set=pinned)
    pending = specs if pc.all(chosen).as_py() else pc.filter(specs, chosen)
    return keep, pending


async def _settle_journal(journal: LeafJournal, failed: bool) -> None:
    """What the journal still holds is less than its bound of work, and the node's tables,
    written next, hold it all. But retry_failed reruns a node with failures (whether they
    failed now or before a resume) and takes its successes from the journal alone, so such a
    node journals everything."""
    if failed:
        await asyncio.to_thread(journal.flush)


def _any_failed(outcomes: pa.Table) -> bool:
    return not pc.all(outcomes.column("ok")).as_py()


def _tables(
    cls: AnyExperiment, job: NodeJob, specs: pa.Table, outcomes: pa.Table, store: ArtifactStore
) -> NodeTables:
    with paused_gc():
        return job.collector.from_leaves(cls.schema, specs, outcomes, store)


def _append(
    cls: AnyExperiment,
    job: NodeJob,
    number: int,
    specs: pa.Table,
    outcomes: pa.Table,
    store: ArtifactStore,
    written: WindowTables,
) -> None:
    """One window's tables, appended to the node's."""
    written.add(number, _tables(cls, job, specs, outcomes, store))


def _load_plan(store: ArtifactStore, key: str) -> list[int] | None:
    try:
        loaded: list[int] = json.loads(store.get_bytes(key))
    except ArtifactNotFoundError:
        return None
    return loaded


def _save_plan(store: ArtifactStore, key: str, pending: list[int]) -> None:
    store.put_bytes(key, json.dumps(pending).encode())
