"""The scatter/gather tree, written once for every engine.

A node reads its slice of specs from the store. If the recursion policy says so it splits them
grid-stride into children and has the engine run those; otherwise it has the engine run its
leaves. Either way it gathers what came back into Arrow tables, writes them to
``scatter-gather/output/<node>/`` and returns only their keys. An engine supplies a Dispatcher
(how children and leaves are run) and nothing else; the tree knows nothing of processes or queues.

Node outputs are checkpoints: a node whose output is already in the store returns it at once,
so a resumed run skips every finished subtree.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import operator
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import attrs
import pyarrow as pa

from scythe_oo.collector import (
    DATAFRAME_PREFIX,
    FAILURE_COLUMNS,
    NodeTables,
    ResultCollector,
    dataframe_index_levels,
)
from scythe_oo.errors import ArtifactNotFoundError
from scythe_oo.gather import copy_parquet
from scythe_oo.gcpause import paused_gc
from scythe_oo.journal import LeafJournal
from scythe_oo.layout import RunLayout
from scythe_oo.manifest import Counts, Manifest, utc_now
from scythe_oo.outcome import LeafOutcome
from scythe_oo.recursion import RecursionPolicy
from scythe_oo.scatter import child_sizes, count_rows, split_grid_stride
from scythe_oo.settings import Settings
from scythe_oo.tables import open_parquet, read_table, write_table

if TYPE_CHECKING:
    from scythe_oo.experiment import Experiment
    from scythe_oo.store.base import ArtifactStore

ROOT = "root"
NODE_DONE = "_node.json"
_OK = operator.attrgetter("ok")


@attrs.frozen(kw_only=True)
class NodeJob:
    """A node's whole input: small enough for any queue payload."""

    experiment: str
    experiment_id: str
    node: str = ROOT
    depth: int = 0
    factor: int
    max_depth: int
    generation: int = 1
    """Raised by ``ExperimentRun.retry_failed``: failures of older generations run again."""
    n_specs: int = -1
    """How many specs the node holds, when its parent knows (-1: read it from the store)."""

    @property
    def recursion(self) -> RecursionPolicy:
        return RecursionPolicy(factor=self.factor, max_depth=self.max_depth)

    @property
    def layout(self) -> RunLayout:
        return RunLayout.from_experiment_id(self.experiment_id)

    def child(self, index: int, n_specs: int = -1) -> NodeJob:
        return attrs.evolve(
            self, node=f"{self.node}/{index}", depth=self.depth + 1, n_specs=n_specs
        )

    def specs_key(self) -> str:
        return self.layout.specs if self.node == ROOT else self.layout.node_input(self.node)


@attrs.frozen(kw_only=True)
class NodeResult:
    """What a node returns: the keys of its tables and its counts."""

    node: str
    tables: dict[str, str]
    succeeded: int
    failed: int
    generation: int = 1
    leaf_parent: bool = False
    """True when this node ran leaves itself (its counts are leaf counts, not subtotals)."""


OutcomeSink = Callable[[Sequence[LeafOutcome]], Awaitable[None]]


class Dispatcher(Protocol):
    """How an engine runs the children and the leaves of a node."""

    async def run_nodes(self, jobs: Sequence[NodeJob]) -> list[NodeResult]: ...

    def admission(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held by a base node from reading its specs to writing its tables."""
        ...

    def splits(self, job: NodeJob, n_specs: int) -> bool:
        """Whether the node splits into children. The recursion policy sets the most a tree
        may split; an engine may keep a node whole when splitting would buy it nothing."""
        ...

    def leaf_plan_key(self, job: NodeJob) -> str | None:
        """Where to pin the node's list of leaves to dispatch, or None not to pin it.

        Durable engines replay a node after a crash and expect it to spawn exactly the same
        children; a node that consulted a journal grown in the meantime would not. Pinning
        the list (per node execution) keeps the replay identical.
        """
        ...

    async def run_leaves(
        self, job: NodeJob, specs: pa.Table, sink: OutcomeSink
    ) -> list[LeafOutcome]:
        """Run the leaves of ``specs``; pass outcomes to ``sink`` as they arrive."""
        ...


def node_result_key(job: NodeJob) -> str:
    return f"{job.layout.node_output_prefix(job.node)}/{NODE_DONE}"


def load_node_result(store: ArtifactStore, job: NodeJob) -> NodeResult | None:
    """The node's checkpoint, if it is still valid: a node with failures from an older
    generation must run again under ``retry_failed``."""
    try:
        raw = json.loads(store.get_bytes(node_result_key(job)))
    except ArtifactNotFoundError:
        return None
    result = NodeResult(**raw)
    if result.failed and result.generation != job.generation:
        return None
    return result


async def run_node(
    cls: type[Experiment[Any, Any]],
    job: NodeJob,
    store: ArtifactStore,
    dispatcher: Dispatcher,
    collector: ResultCollector | None = None,
) -> NodeResult:
    """Run one node of the tree (and, through the dispatcher, everything below it)."""
    done = await asyncio.to_thread(load_node_result, store, job)
    if done is not None:
        return done
    collector = collector or ResultCollector()
    n_specs = job.n_specs
    if n_specs < 0:  # the root: its size is in the footer of specs.pq
        n_specs = await asyncio.to_thread(count_rows, store, job.specs_key())
    if not dispatcher.splits(job, n_specs):
        # A base node holds its specs and outcomes while it runs: admission keeps only a few
        # of them in memory at once, however many nodes the tree has.
        async with dispatcher.admission():
            specs = await asyncio.to_thread(read_table, store, job.specs_key())
            return await _run_base_node(cls, job, specs, store, dispatcher, collector)
    children = [job.child(i, size) for i, size in enumerate(child_sizes(n_specs, job.factor))]
    await asyncio.to_thread(_scatter, store, job, children)
    results = await dispatcher.run_nodes(children)
    return await asyncio.to_thread(_gather_children, collector, store, job, results)


async def _run_base_node(
    cls: type[Experiment[Any, Any]],
    job: NodeJob,
    specs: pa.Table,
    store: ArtifactStore,
    dispatcher: Dispatcher,
    collector: ResultCollector,
) -> NodeResult:
    outcomes = await _run_journaled_leaves(job, specs, store, dispatcher)
    tables = await asyncio.to_thread(_tables_from_leaves, collector, cls, specs, outcomes, store)
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
        # What the journal still holds is less than its bound of work, and the node's tables,
        # written next, hold it all. But retry_failed reruns a node with failures and takes
        # its successes from the journal alone, so such a node journals everything.
        if not all(map(_OK, fresh)):
            await asyncio.to_thread(journal.flush)
    previous = {index: keep[index] for index in sort_index if index in keep}
    return [*previous.values(), *fresh]


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
    cls: type[Experiment[Any, Any]],
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
        split_grid_stride(store, job.specs_key(), missing, job.factor)


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
    index = [c for c in tables.tables["failures"].column_names if c not in FAILURE_COLUMNS]
    for name, table in tables.tables.items():
        if job.node == ROOT:
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
    store.put_bytes(node_result_key(job), json.dumps(attrs.asdict(result)).encode())
    return result


@attrs.frozen
class FinalShape:
    """How a node table appears in ``final/``: its file name, column order and metadata."""

    name: str
    columns: list[str]
    metadata: dict[bytes, bytes]


def final_shape(name: str, schema: pa.Schema, index: Sequence[str]) -> FinalShape | None:
    """The final form of the root's table ``name`` (None: it has no place in final/).

    ``index`` is the spec index (the failures table's columns that are not failure details);
    a user dataframe adds its own index levels to it.
    """
    levels = list(index)
    if name == "result_file_refs" and len(schema.names) == len(levels):
        return None  # the output schema has no file fields
    if name.startswith(DATAFRAME_PREFIX):
        levels = dataframe_index_levels(schema)
        name = name[len(DATAFRAME_PREFIX) :]
    columns = [*(c for c in schema.names if c not in levels), *levels]
    return FinalShape(name, columns, pandas_index_metadata(schema, levels))


def finalize_run(store: ArtifactStore, layout: RunLayout, root: NodeResult) -> Manifest:
    """Write final/ from the root's tables, then mark the manifest complete.

    A gathered root's tables are copied batch by batch with pandas metadata added, so the
    root never holds a whole table (a root that ran its leaves wrote final/ itself). Tables
    are written first and the manifest last, so a reader who sees a completed status always
    finds every final table.
    """
    final = layout.final_prefix + "/"
    pending = {name: key for name, key in root.tables.items() if not key.startswith(final)}
    if pending:
        with open_parquet(store, root.tables["failures"]) as failures:
            index = [c for c in failures.schema_arrow.names if c not in FAILURE_COLUMNS]
    for name, key in pending.items():
        with open_parquet(store, key) as parquet:  # one download per table, even on S3
            shape = final_shape(name, parquet.schema_arrow, index)
            if shape is not None:
                copy_parquet(
                    parquet, store, layout.final(shape.name), shape.columns, shape.metadata
                )
    manifest = Manifest.from_yaml(store.get_bytes(layout.manifest))
    counts = Counts(
        succeeded=root.succeeded, failed=root.failed, total=root.succeeded + root.failed
    )
    manifest = manifest.evolve(
        status="completed_with_failures" if root.failed else "completed",
        counts=counts,
        finished_at=utc_now(),
    )
    store.put_bytes(layout.manifest, manifest.to_yaml())
    return manifest


def pandas_index_metadata(schema: pa.Schema, levels: Sequence[str]) -> dict[bytes, bytes]:
    """Schema metadata that makes ``levels`` the index when pandas reads the table.

    Derived from a zero-row table, so final tables are written straight from Arrow: the root
    never turns 10^6 rows into pandas objects.
    """
    data = [c for c in schema.names if c not in levels]
    sample = schema.empty_table().select([*data, *levels]).to_pandas().set_index(list(levels))
    pandas_meta = pa.Schema.from_pandas(sample, preserve_index=True).metadata
    return {**(schema.metadata or {}), **pandas_meta}


def mark_running(store: ArtifactStore, layout: RunLayout, engine_run_id: str | None) -> None:
    """Record that the engine picked the run up, and under which id it can be followed."""
    manifest = Manifest.from_yaml(store.get_bytes(layout.manifest))
    if manifest.status in ("allocating", "queued", "running"):
        updated = manifest.evolve(status="running", engine_run_id=engine_run_id)
        store.put_bytes(layout.manifest, updated.to_yaml())


def fail_run(store: ArtifactStore, layout: RunLayout, error: str) -> None:
    """Record in the manifest that the run stopped without final tables, and why."""
    manifest = Manifest.from_yaml(store.get_bytes(layout.manifest))
    store.put_bytes(
        layout.manifest,
        manifest.evolve(status="failed", error=error, finished_at=utc_now()).to_yaml(),
    )
