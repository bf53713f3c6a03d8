"""Running one node of the scatter/gather tree, the same way on every engine.

A node reads its slice of specs from the store. If the recursion policy (and the engine) say
so, it splits them grid-stride into children and has the engine run those; otherwise it has
the engine run its leaves. Either way it gathers what came back into Arrow tables, writes them
to ``scatter-gather/output/<node>/`` and returns only their keys.

Node outputs are checkpoints: a node whose output is already in the store returns it at once,
so a resumed run skips every finished subtree.
"""

from __future__ import annotations

import asyncio
import json
import operator
from collections.abc import Sequence

import attrs
import pyarrow as pa

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.definition.settings import Settings
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.runfolder.layout import ROOT_NODE
from scythe_oo.runfolder.tables import read_table, write_table
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import NodeTables, ResultCollector
from scythe_oo.tree.final import final_shape, spec_index
from scythe_oo.tree.gcpause import paused_gc
from scythe_oo.tree.job import Dispatcher, NodeJob, NodeResult
from scythe_oo.tree.journal import LeafJournal
from scythe_oo.tree.scatter import child_sizes, count_rows, split_grid_stride

_OK = operator.attrgetter("ok")


def load_node_result(store: ArtifactStore, job: NodeJob) -> NodeResult | None:
    """The node's checkpoint, if it is still valid: a node with failures from an older
    generation must run again under ``retry_failed``."""
    try:
        raw = json.loads(store.get_bytes(job.layout.node_done(job.node)))
    except ArtifactNotFoundError:
        return None
    result = NodeResult(**raw)
    if result.failed and result.generation != job.generation:
        return None
    return result


async def run_node(
    cls: AnyExperiment, job: NodeJob, store: ArtifactStore, dispatcher: Dispatcher
) -> NodeResult:
    """Run one node of the tree (and, through the dispatcher, everything below it)."""
    done = await asyncio.to_thread(load_node_result, store, job)
    if done is not None:
        return done
    n_specs = job.n_specs
    if n_specs < 0:  # the root: its size is in the footer of specs.pq
        n_specs = await asyncio.to_thread(count_rows, store, job.specs_key())
    fan_out = job.recursion.children(job.depth, n_specs)
    if fan_out < 2 or not dispatcher.splits(job, n_specs):
        # A base node holds its specs and outcomes while it runs: admission keeps only a few
        # of them in memory at once, however many nodes the tree has.
        async with dispatcher.admission():
            specs = await asyncio.to_thread(read_table, store, job.specs_key())
            return await _run_base_node(cls, job, specs, store, dispatcher)
    children = [job.child(i, size) for i, size in enumerate(child_sizes(n_specs, fan_out))]
    await asyncio.to_thread(_scatter, store, job, children)
    results = await dispatcher.run_nodes(children)
    return await asyncio.to_thread(_gather_children, job.collector, store, job, results)


async def _run_base_node(
    cls: AnyExperiment,
    job: NodeJob,
    specs: pa.Table,
    store: ArtifactStore,
    dispatcher: Dispatcher,
) -> NodeResult:
    outcomes = await _run_journaled_leaves(job, specs, store, dispatcher)
    tables = await asyncio.to_thread(
        _tables_from_leaves, job.collector, cls, specs, outcomes, store
    )
    return await asyncio.to_thread(write_node, store, job, tables, True)


async def _run_journaled_leaves(
    job: NodeJob, specs: pa.Table, store: ArtifactStore, dispatcher: Dispatcher
) -> list[LeafOutcome]:
    """Dispatch only the leaves the journal does not already hold, journaling as they finish."""
    journal = LeafJournal(
        store,
        job.layout,
        job.node,
        job.generation,
        max_seconds=Settings.from_env().journal_seconds,
    )
    keep = await asyncio.to_thread(journal.settled)
    sort_index = specs.column("sort_index").to_pylist()
    plan_key = dispatcher.leaf_plan_key(job)
    pinned = await asyncio.to_thread(_load_plan, store, plan_key)
    if pinned is None:
        pinned = {index for index in sort_index if index not in keep}
        if plan_key is not None:
            await asyncio.to_thread(_save_plan, store, plan_key, pinned)
    keep = {index: outcome for index, outcome in keep.items() if index not in pinned}
    missing = [row for row, index in enumerate(sort_index) if index in pinned]
    fresh: list[LeafOutcome] = []
    if missing:
        pending = specs.take(pa.array(missing, type=pa.int64()))

        async def sink(outcomes: Sequence[LeafOutcome]) -> None:
            await asyncio.to_thread(journal.record, outcomes)

        fresh = await dispatcher.run_leaves(job, pending, sink)
    previous = {index: keep[index] for index in sort_index if index in keep}
    outcomes = [*previous.values(), *fresh]
    # What the journal still holds is less than its bound of work, and the node's tables,
    # written next, hold it all. But retry_failed reruns a node with failures (whether they
    # failed now or before a resume) and takes its successes from the journal alone, so
    # such a node journals everything.
    if not all(map(_OK, outcomes)):
        await asyncio.to_thread(journal.flush)
    return outcomes


def _load_plan(store: ArtifactStore, key: str | None) -> set[int] | None:
    if key is None:
        return None
    try:
        return set(json.loads(store.get_bytes(key)))
    except ArtifactNotFoundError:
        return None


def _save_plan(store: ArtifactStore, key: str, pending: set[int]) -> None:
    store.put_bytes(key, json.dumps(sorted(pending)).encode())


def _tables_from_leaves(
    collector: ResultCollector,
    cls: AnyExperiment,
    specs: pa.Table,
    outcomes: Sequence[LeafOutcome],
    store: ArtifactStore,
) -> NodeTables:
    with paused_gc():
        return collector.from_leaves(cls.schema, specs, outcomes, store)


def _scatter(store: ArtifactStore, job: NodeJob, children: Sequence[NodeJob]) -> None:
    """Write the children's specs; a replayed node leaves the ones already written alone."""
    missing = [None if store.exists(c.specs_key()) else c.specs_key() for c in children]
    if any(missing):
        split_grid_stride(store, job.specs_key(), missing, len(children))


def _gather_children(
    collector: ResultCollector, store: ArtifactStore, job: NodeJob, results: Sequence[NodeResult]
) -> NodeResult:
    """Merge the children's tables, read by key, into this node's; the counts add up."""
    names = sorted({name for r in results for name in r.tables})
    sources = {name: [r.tables[name] for r in results if name in r.tables] for name in names}
    keys = {name: job.layout.node_output(job.node, name) for name in names}
    collector.combine(store, sources, keys)
    return record_node(
        store,
        job,
        keys,
        succeeded=sum(r.succeeded for r in results),
        failed=sum(r.failed for r in results),
        leaf_parent=False,
    )


def write_node(
    store: ArtifactStore, job: NodeJob, tables: NodeTables, leaf_parent: bool
) -> NodeResult:
    """Store a base node's tables. A root that ran its leaves itself writes ``final/`` at
    once, in its final form, so finalize_run has nothing left to copy."""
    keys = {}
    index = spec_index(tables.tables["failures"].schema)
    for name, table in tables.tables.items():
        if job.node == ROOT_NODE:
            shape = final_shape(name, table.schema, index)
            if shape is None:
                continue
            key = job.layout.final(shape.name)
            table = table.select(shape.columns).replace_schema_metadata(shape.metadata)
        else:
            key = job.layout.node_output(job.node, name)
        write_table(store, key, table)
        keys[name] = key
    return record_node(store, job, keys, tables.succeeded, tables.failed, leaf_parent)


def record_node(
    store: ArtifactStore,
    job: NodeJob,
    keys: dict[str, str],
    succeeded: int,
    failed: int,
    leaf_parent: bool,
) -> NodeResult:
    """Checkpoint the node once its tables are stored: the marker is always written last."""
    result = NodeResult(
        node=job.node,
        tables=keys,
        succeeded=succeeded,
        failed=failed,
        generation=job.generation,
        leaf_parent=leaf_parent,
    )
    store.put_bytes(job.layout.node_done(job.node), json.dumps(attrs.asdict(result)).encode())
    return result
