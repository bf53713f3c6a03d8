"""ResultCollector: turns leaf outcomes into Arrow tables and combines children's tables.

Everything is column-wise Arrow: a node never holds its leaves' outputs as Python objects any
longer than it takes to build one column, and combining children is a streaming merge of their
Parquet files (scythe_oo.tree.gather), so no node holds its whole subtree's results.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.schema import (
    FAILURE_COLUMN_NAMES,
    LEAF_STATS_COLUMN_NAMES,
    ExperimentSchema,
    FieldPlan,
)
from scythe_oo.leaf.outcome_table import FILE, OUT
from scythe_oo.runfolder.specs import index_names
from scythe_oo.runfolder.tables import DATAFRAME_INDEX_META, read_table
from scythe_oo.tree.gather import Reshape, merge_sorted
from scythe_oo.tree.side_by_side import side_by_side

if TYPE_CHECKING:
    from scythe_oo.storage.base import ArtifactStore

_COLUMN_TYPES: dict[str, pa.DataType] = {
    "error_type": pa.string(),
    "error_message": pa.string(),
    "traceback": pa.string(),
    "attempts": pa.int64(),
    "worker": pa.string(),
    "wall_time": pa.float64(),
    "ok": pa.bool_(),
    "peak_rss_mib": pa.float64(),
    "finished_at": pa.timestamp("us", tz="UTC"),
    "log_tail": pa.string(),
}

FAILURE_COLUMNS = {name: _COLUMN_TYPES[name] for name in FAILURE_COLUMN_NAMES}

LEAF_STATS_COLUMNS = {name: _COLUMN_TYPES[name] for name in LEAF_STATS_COLUMN_NAMES}
"""Columns of leaf_stats: how long each leaf took, how much memory its process peaked at, and
when it ended (for throughput over time); one row per spec, failed or not."""

DATAFRAME_PREFIX = "df."

MERGE_THREADS = 2
"""Tables a node merges at once, at most. Each merge holds a row group of every child it
reads (about 130 MiB for ten children of 10^6 no-op leaves' scalars), so this bounds the
driver's memory as much as the time it saves."""


@attrs.frozen
class NodeTables:
    """The tables of one node: scalars, result_file_refs, failures and ``df.<name>``."""

    tables: dict[str, pa.Table]

    @property
    def succeeded(self) -> int:
        return int(self.tables["scalars"].num_rows)

    @property
    def failed(self) -> int:
        return int(self.tables["failures"].num_rows)


@attrs.frozen(kw_only=True)
class ResultCollector:
    """How leaf outcomes become tables, and children's tables their parent's.

    A strategy: subclass it (as a frozen attrs class) and override ``leaf_table`` to change
    the tables each base node builds from its leaves (add a derived column, say),
    ``from_leaves`` to build them differently, or ``combine`` to change how children's tables
    are merged. It travels by value to every node, on every engine, so a subclass must live in
    a module that workers can import.
    """

    merge_rows: int = attrs.field(
        default=65_536, validator=[attrs.validators.instance_of(int), attrs.validators.ge(1)]
    )
    """Rows a node holds while merging its children's tables; bounds its gather memory."""

    def from_leaves(
        self,
        schema: ExperimentSchema,
        specs: pa.Table,
        outcomes: pa.Table,
        store: ArtifactStore,
    ) -> NodeTables:
        """Tables for the leaves of one base-case node, built column by column.

        ``specs`` holds the node's index columns; ``outcomes`` one row per leaf (an outcome
        table, see ``scythe_oo.leaf.outcome_table``), in any order.
        """
        index = specs.select(index_names(specs))
        outcomes = outcomes.sort_by("sort_index")
        indexed = _aligned(index, outcomes.column("sort_index"))
        ok = outcomes.column("ok")
        if pc.all(ok).as_py() is not False:  # every leaf succeeded (or there are none)
            good, bad = outcomes, outcomes.slice(0, 0)
            good_index, bad_index = indexed, indexed.slice(0, 0)
        else:
            good, bad = pc.filter(outcomes, ok), pc.filter(outcomes, pc.invert(ok))
            good_index, bad_index = pc.filter(indexed, ok), pc.filter(indexed, pc.invert(ok))

        def columns(table: pa.Table, prefix: str, plans: Sequence[FieldPlan]) -> dict[str, Any]:
            return {p.name: table.column(prefix + p.name) for p in plans}

        tables = {
            "scalars": _with_columns(good_index, columns(good, OUT, schema.scalar_outputs)),
            "failures": _with_columns(
                bad_index, {name: bad.column(name) for name in FAILURE_COLUMNS}
            ),
            "leaf_stats": _with_columns(indexed, _leaf_stats(outcomes)),
        }
        if schema.file_outputs:  # else it would only repeat the index, every node, every row
            tables["result_file_refs"] = _with_columns(
                good_index, columns(good, FILE, schema.file_outputs)
            )
        frames = good.column("dataframes").to_pylist()
        named = [(row, json.loads(raw)) for row, raw in enumerate(frames) if raw]
        for name in sorted({name for _, keys in named for name in keys}):
            parts = [
                _prepend_index(good_index.slice(row, 1), read_table(store, keys[name]))
                for row, keys in named
                if name in keys
            ]
            tables[DATAFRAME_PREFIX + name] = concat(parts)
        return NodeTables({name: self.leaf_table(name, table) for name, table in tables.items()})

    def leaf_table(self, name: str, table: pa.Table) -> pa.Table:
        """Called for each table a base node builds from its leaves, before it is stored.

        ``name`` is ``scalars``, ``result_file_refs`` (when the output has file fields),
        ``failures``, ``leaf_stats`` or ``df.<user table>``;
        the table holds the spec index columns, then the outputs. Return it unchanged (the
        default), or with columns added or changed: every node of a run must agree on the
        columns of a table. Rows must stay as they are, one per spec.
        """
        return table

    def combine(
        self,
        store: ArtifactStore,
        sources: Mapping[str, Sequence[str]],
        destinations: Mapping[str, str],
        reshapes: Mapping[str, Reshape] | None = None,
    ) -> None:
        """Merge each table name's children (by key) into its destination, in sort_index order.

        Streamed: at most ``merge_rows`` rows of a table are in memory at once. ``reshapes``
        (the root passes them) lay a table out as final/ keeps it, or leave it out.

        The tables are merged side by side, MERGE_THREADS at a time: a merge is Parquet
        decoding, sorting and encoding, which release the interpreter lock, and the root's
        run after the last leaf, when nothing else is left to run. (At 10^7 no-op leaves on 2
        cores, the root's merges took 27.7 s one after the other and 14 s two at a time.)
        """
        shapes = reshapes or {}

        def merge(name: str) -> None:
            merge_sorted(
                store, sources[name], destinations[name], self.merge_rows, shapes.get(name)
            )

        side_by_side(merge, list(sources), most=MERGE_THREADS, name="scythe-merge")


def takes_reshapes(collector: ResultCollector) -> bool:
    """Whether ``collector.combine`` can write the root's tables in their final layout: an
    override written before ``reshapes`` existed would refuse the argument."""
    return "reshapes" in inspect.signature(collector.combine).parameters


def _leaf_stats(outcomes: pa.Table) -> dict[str, Any]:
    """leaf_stats columns; the end time becomes a UTC timestamp (0: not known, older journals)."""
    columns: dict[str, Any] = {
        name: outcomes.column(name) for name in LEAF_STATS_COLUMNS if name != "finished_at"
    }
    seconds = outcomes.column("finished_at")
    micros = pc.cast(pc.multiply(seconds, 1_000_000), pa.int64(), safe=False)
    known = pc.if_else(pc.greater(seconds, 0), micros, pa.scalar(None, pa.int64()))
    columns["finished_at"] = known.cast(LEAF_STATS_COLUMNS["finished_at"])
    return {name: columns[name] for name in LEAF_STATS_COLUMN_NAMES}


def _aligned(index: pa.Table, sort_index: pa.ChunkedArray) -> pa.Table:
    """The rows of ``index`` for each of ``sort_index``, in its order. A node's outcomes,
    sorted, are usually its specs in order, which a comparison finds faster than a lookup."""
    same = (
        len(index) == len(sort_index)
        and pc.all(pc.equal(index.column("sort_index"), sort_index)).as_py()
    )
    if same:
        return index
    return index.take(pc.index_in(sort_index, value_set=index.column("sort_index")))


def _with_columns(index: pa.Table, columns: dict[str, Any]) -> pa.Table:
    table = index
    for name, column in columns.items():
        table = table.append_column(name, column)
    return table


def _prepend_index(index_row: pa.Table, frame: pa.Table) -> pa.Table:
    """A user table with the spec's index levels as its first columns."""
    own_index = (frame.schema.metadata or {}).get(DATAFRAME_INDEX_META, b"").decode()
    clash = set(index_row.column_names) & set(frame.column_names)
    if clash:
        raise ValueError(
            f"user dataframe columns {sorted(clash)} clash with the spec index levels; rename them"
        )
    repeated = index_row.take(pa.array([0] * frame.num_rows, type=pa.int64()))
    table = repeated
    for name in frame.column_names:
        table = table.append_column(name, frame.column(name))
    levels = [*index_row.column_names, *(n for n in own_index.split(",") if n)]
    return table.replace_schema_metadata({DATAFRAME_INDEX_META: ",".join(levels).encode()})


def concat(parts: Sequence[pa.Table]) -> pa.Table:
    """Concatenate tables whose types may differ slightly (int vs float, null vs typed)."""
    if len(parts) == 1:
        return parts[0]
    metadata = next((p.schema.metadata for p in parts if p.schema.metadata), None)
    table = pa.concat_tables(parts, promote_options="permissive")
    return table.replace_schema_metadata(metadata) if metadata else table
