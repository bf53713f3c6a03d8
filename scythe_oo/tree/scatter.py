"""The streaming scatter: a node's specs split grid-stride among its children, batch by batch.

Reading a node's whole slice to split it would make the root hold every spec of the sweep. The
split reads one batch at a time and appends each child's rows to that child's file, so a node
holds one batch however many specs lie below it. Child i takes rows i, i+factor, ... of the
node's slice, in order, so every child's specs stay sorted by sort_index.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.runfolder.tables import open_parquet, parquet_sink
from scythe_oo.storage.base import ArtifactStore


def count_rows(store: ArtifactStore, key: str) -> int:
    """Rows of a stored table, from its footer alone."""
    with open_parquet(store, key) as parquet:
        return int(parquet.metadata.num_rows)


def child_sizes(n_specs: int, factor: int) -> list[int]:
    """How many specs each child of a grid-stride split gets; empty children are dropped."""
    return [len(range(i, n_specs, factor)) for i in range(min(factor, n_specs))]


def split_grid_stride(
    store: ArtifactStore,
    source: str,
    destinations: Sequence[str | None],
    factor: int,
    batch_rows: int = 65_536,
) -> None:
    """Write child i's rows of ``source`` to ``destinations[i]`` (None: that child already has
    its specs). A child's file appears only once it is complete."""
    with contextlib.ExitStack() as stack:
        parquet = stack.enter_context(open_parquet(store, source))
        writers: list[pq.ParquetWriter | None] = [
            None
            if dest is None
            else stack.enter_context(parquet_sink(store, dest, parquet.schema_arrow))
            for dest in destinations
        ]
        offset = 0
        for batch in parquet.iter_batches(batch_size=batch_rows):
            table = pa.Table.from_batches([batch])
            for i, writer in enumerate(writers):
                rows = np.arange((i - offset) % factor, table.num_rows, factor)
                if writer is not None and len(rows):
                    writer.write_table(table.take(rows))
            offset += table.num_rows
