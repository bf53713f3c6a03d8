"""The streaming gather: children's sorted tables merged into one, in bounded memory.

Every node's tables are sorted by ``sort_index``. Grid-stride splitting interleaves the
children's rows, so a parent cannot simply append them; it merges them instead. The merge reads
each child a batch at a time and emits every row that no unread row can precede, so a node holds
about ``budget_rows`` rows however large its subtree is, and the root writes ``final/`` the same
way. Children are read by reference (their keys), never passed around as tables.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scythe_oo.runfolder.tables import conform, open_parquets, parquet_sink
from scythe_oo.storage.base import ArtifactStore

SORT_KEY = "sort_index"

Reshape = Callable[[pa.Schema], pa.Schema | None]
"""How a merged table is stored, given its children's unified schema: the columns to write (a
selection of its fields, in order) and their metadata, or None to write nothing."""


def unified_schema(schemas: Sequence[pa.Schema]) -> pa.Schema:
    """One schema all children fit: int widens to float, null columns take the others' type.

    The first non-empty metadata wins; children of one node agree on it.
    """
    unified = pa.unify_schemas(list(schemas), promote_options="permissive")
    metadata = next((s.metadata for s in schemas if s.metadata), None)
    return unified.with_metadata(metadata) if metadata else unified.remove_metadata()


class _Output:
    """Collects merged rows and writes them as row groups of a sensible size."""

    def __init__(
        self, writer: pq.ParquetWriter, schema: pa.Schema, target: pa.Schema, group_rows: int
    ) -> None:
        self.writer = writer
        self.schema = schema
        self.target = target
        self.reshaped = target is not schema
        self.group_rows = group_rows
        self.parts: list[pa.Table] = []
        self.rows = 0
        self.written = 0

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            self.parts.append(table)
            self.rows += table.num_rows
        if self.rows >= self.group_rows:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            merged = pa.concat_tables(self.parts).combine_chunks()
            if self.reshaped:
                merged = merged.select(self.target.names).replace_schema_metadata(
                    self.target.metadata
                )
            self.writer.write_table(merged)
            self.written += self.rows
        self.parts, self.rows = [], 0


def _batches(parquet: pq.ParquetFile, schema: pa.Schema, rows: int) -> Iterator[pa.Table]:
    for batch in parquet.iter_batches(batch_size=rows):
        yield conform(pa.Table.from_batches([batch]), schema)


def merge_sorted(
    store: ArtifactStore,
    sources: Sequence[str],
    dest: str,
    budget_rows: int = 65_536,
    reshape: Reshape | None = None,
) -> int | None:
    """Merge the tables at ``sources`` (each sorted by sort_index) into ``dest``; rows written
    (None: ``reshape`` left the table out, and nothing was written).

    About ``budget_rows`` rows are held at once (at least 256 per source), and row groups are
    at most 1.5 times that. Tables without a sort_index column are appended in the order given.
    ``reshape`` lets the root merge straight into final/'s layout: a copy afterwards would read
    and write every row of a large sweep once more, after its last leaf.
    """
    with contextlib.ExitStack() as stack:
        files = stack.enter_context(open_parquets(store, sources))
        schema = unified_schema([f.schema_arrow for f in files])
        target = schema if reshape is None else reshape(schema)
        if target is None:
            return None
        writer = stack.enter_context(parquet_sink(store, dest, target))
        per_source = max(256, budget_rows // max(1, len(files)))
        output = _Output(writer, schema, target, group_rows=max(per_source, budget_rows // 2))
        streams = [_batches(f, schema, per_source) for f in files]
        if SORT_KEY not in schema.names:
            for stream in streams:
                for table in stream:
                    output.add(table)
        else:
            _merge(streams, output)
        output.flush()
        return output.written


def _merge(streams: list[Iterator[pa.Table]], output: _Output) -> None:
    """k-way merge of sorted streams, a buffer per stream.

    Each round takes, from every buffer, the rows whose key is at most the smallest last key of
    the buffers still backed by unread batches; no unread row can sort before those. The buffer
    that set the bound empties every round, so the merge always advances.
    """
    empty = output.schema.empty_table()
    buffers = [empty] * len(streams)
    unread = [True] * len(streams)
    while True:
        for i, stream in enumerate(streams):
            while unread[i] and buffers[i].num_rows == 0:
                table = next(stream, None)
                if table is None:
                    unread[i] = False
                else:
                    buffers[i] = table
        held = [i for i, b in enumerate(buffers) if b.num_rows]
        if not held:
            return
        lasts = [buffers[i].column(SORT_KEY)[-1].as_py() for i in held if unread[i]]
        bound = min(lasts) if lasts else None
        parts = []
        for i in held:
            keys = buffers[i].column(SORT_KEY).to_numpy()
            cut = len(keys) if bound is None else int(np.searchsorted(keys, bound, side="right"))
            parts.append(buffers[i].slice(0, cut))
            buffers[i] = buffers[i].slice(cut)
        chunk = pa.concat_tables(parts)
        if len(parts) > 1:
            chunk = chunk.take(pc.sort_indices(chunk, sort_keys=[(SORT_KEY, "ascending")]))
        output.add(chunk)


def copy_parquet(
    parquet: pq.ParquetFile,
    store: ArtifactStore,
    dest: str,
    columns: Sequence[str] | None = None,
    metadata: dict[bytes, bytes] | None = None,
    batch_rows: int = 65_536,
) -> int:
    """Copy an open table batch by batch, keeping ``columns`` in that order and setting
    ``metadata``. The caller opens it, so a table read for its schema is downloaded once."""
    schema = parquet.schema_arrow
    names = list(columns) if columns is not None else schema.names
    target = pa.schema([schema.field(n) for n in names], metadata=metadata or schema.metadata)
    written = 0
    with parquet_sink(store, dest, target) as writer:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=names):
            writer.write_table(pa.Table.from_batches([batch]).select(names))
            written += batch.num_rows
    return written
