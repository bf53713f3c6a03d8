"""A large base node's tables, streamed window by window into the files they end in.

A base node of 10^6 specs runs them in windows (see ``base_node``). Writing each window's
tables as a part, merging the parts into the node's tables and, at the root, copying those
into final/ wrote every row three times; at 10^5 no-op leaves the two extra writes were a
fifth of the run. Windows come in sort_index order and do not overlap, so their tables can
simply be appended: each table is one staged Parquet file, and the root's are written in
their final form (outputs first, index levels last, pandas metadata), so final/ is a rename.

Appending needs every window's table to have the first one's schema. The framework's own
tables always do (their types come from the experiment's schema and specs.pq); a user table
or a custom collector's column may not (a column all null in one window, say). Such a table
falls back to parts from the first window that differs: the staged file becomes part one, and
the parts are merged as children's tables are.
"""

from __future__ import annotations

import contextlib

import attrs
import pyarrow as pa

from scythe_oo.runfolder.layout import ROOT_NODE
from scythe_oo.runfolder.tables import StagedParquet, write_table
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import NodeTables, takes_reshapes
from scythe_oo.tree.final import FinalShape, final_shape, spec_index
from scythe_oo.tree.job import NodeJob, NodeResult
from scythe_oo.tree.node_tables import record_node
from scythe_oo.tree.side_by_side import side_by_side


@attrs.define
class _Table:
    """One table name's file in progress, and the parts it fell back to (if any)."""

    staged: StagedParquet
    shape: FinalShape | None
    parts: list[str] = attrs.field(factory=list)


class WindowTables:
    """Appends each window's tables to the node's; ``finish`` stores and checkpoints them."""

    def __init__(self, store: ArtifactStore, job: NodeJob) -> None:
        self.store = store
        self.job = job
        self.root = job.node == ROOT_NODE
        self.tables: dict[str, _Table] = {}
        self.skipped: set[str] = set()  # root tables that have no place in final/
        self.succeeded = 0
        self.failed = 0
        self._index: list[str] | None = None

    def add(self, number: int, tables: NodeTables) -> None:
        """Append window ``number``'s tables (windows come in order, each once).

        The tables are encoded side by side, each in a thread of its own (Parquet encoding
        releases the interpreter lock): one window's scalars and leaf_stats took about 1 us
        per leaf in a row, which on 16 workers is longer than the next window's no-op leaves
        take to run, and this node's next window waits for its last one's tables."""
        if self._index is None:
            self._index = spec_index(tables.tables["failures"].schema)
        appends: list[tuple[StagedParquet, pa.Table]] = []
        for name, table in tables.tables.items():
            if name in self.skipped:
                continue
            current = self.tables.get(name)
            if current is None:
                shape = final_shape(name, table.schema, self._index) if self.root else None
                if self.root and shape is None:
                    self.skipped.add(name)
                    continue
                shaped = _shaped(table, shape)
                near = self.job.layout.final(shape.name) if shape else self._output(name)
                current = _Table(StagedParquet(self.store, near, shaped.schema), shape)
                self.tables[name] = current
            else:
                shaped = _shaped(table, current.shape)
            if not current.parts and (
                shaped.num_rows == 0 or shaped.schema.equals(current.staged.schema)
            ):
                appends.append((current.staged, shaped))
                continue
            if not current.parts:  # the first window that differs: what is staged is part 1
                current.parts.append(
                    current.staged.commit(self.job.layout.node_part(self.job.node, 0, name))
                )
            part = self.job.layout.node_part(self.job.node, number + 1, name)
            write_table(self.store, part, shaped)
            current.parts.append(part)
        _append_all(appends)
        self.succeeded += tables.succeeded
        self.failed += tables.failed

    def finish(self, leaf_parent: bool) -> NodeResult:
        """Place every table where it belongs and write the node's checkpoint."""
        keys: dict[str, str] = {}
        merges: dict[str, list[str]] = {}
        for name, table in self.tables.items():
            if table.parts:
                # the parts are laid out as final/ keeps them already; a root whose combine
                # takes no reshapes is copied into final/ by finalize_run
                shape = table.shape if takes_reshapes(self.job.collector) else None
                keys[name] = self.job.layout.final(shape.name) if shape else self._output(name)
                merges[name] = list(table.parts)
            elif table.shape is not None:
                keys[name] = table.staged.commit(self.job.layout.final(table.shape.name))
            else:
                keys[name] = table.staged.commit(self._output(name))
        if merges:
            self.job.collector.combine(self.store, merges, {n: keys[n] for n in merges})
        return record_node(self.store, self.job, keys, self.succeeded, self.failed, leaf_parent)

    def discard(self) -> None:
        """Drop every staged file (the node failed; a resumed run starts it again)."""
        for table in self.tables.values():
            with contextlib.suppress(OSError):
                table.staged.discard()

    def _output(self, name: str) -> str:
        return self.job.layout.node_output(self.job.node, name)


def _append_all(appends: list[tuple[StagedParquet, pa.Table]]) -> None:
    """Each table appended to its own file, the files side by side."""
    busy = [(staged, table) for staged, table in appends if table.num_rows]
    side_by_side(lambda pair: pair[0].write(pair[1]), busy, most=len(busy), name="scythe-tables")


def _shaped(table: pa.Table, shape: FinalShape | None) -> pa.Table:
    if shape is None:
        return table
    return table.select(shape.columns).replace_schema_metadata(shape.metadata)
