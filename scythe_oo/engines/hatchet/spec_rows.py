"""Leaf batches that name rows of their node's specs file instead of carrying the specs.

A batch runs for a few seconds (see ``dispatcher``). Of no-op leaves that is 10^5 specs, and
their JSON would be tens of MiB of task input, which Hatchet stores in PostgreSQL and sends
in messages capped at 4 MiB. Capping batches at 128 inline specs instead made a 10^6-spec
sweep about 7,800 leaf tasks, and the local engine stopped handing them out. So a batch whose
specs do not fit a small payload carries ``[start, stop)`` runs of row numbers of its node's
specs.pq, and the process that runs it reads those rows itself, a row group at a time.
"""

from __future__ import annotations

import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.runfolder.tables import local_path
from scythe_oo.storage.base import ArtifactStore

RowRuns = list[tuple[int, int]]
"""``[start, stop)`` row numbers of a node's specs file, ascending and disjoint."""

KEPT_COPIES = 4
"""Downloaded node files a leaf process keeps: its next batch is most likely of the same node."""

_LOCK = threading.Lock()
_COPIES: OrderedDict[str, Path] = OrderedDict()
_FOLDER: list[Path] = []


def row_runs(rows: Sequence[int] | np.ndarray) -> RowRuns:
    """Ascending row numbers as runs of consecutive rows (a fresh node's batch is one run)."""
    positions = np.asarray(rows, dtype=np.int64)
    if not len(positions):
        return []
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    starts = positions[np.concatenate(([0], breaks))]
    stops = positions[np.concatenate((breaks - 1, [len(positions) - 1]))] + 1
    return [(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]


def spec_rows(store: ArtifactStore, key: str, runs: RowRuns) -> pa.Table:
    """The rows at ``runs`` of the specs file at ``key`` (each spec's JSON or its columns,
    which ``spec_columns.spec_objects`` makes specs of in one call). Only the row groups the
    runs touch are read."""
    path = _node_file(store, key)
    parquet = pq.ParquetFile(path)
    metadata = parquet.metadata
    sizes = [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)]
    bounds = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
    pieces: list[pa.Table] = []
    group, rows = -1, None
    for start, stop in runs:
        if not 0 <= start < stop <= bounds[-1]:
            raise ValueError(
                f"rows [{start}, {stop}) are not in {store.uri(key)}, which has {bounds[-1]} "
                "rows: the node's specs file changed after its leaves were dispatched"
            )
        row = start
        while row < stop:
            at = int(np.searchsorted(bounds, row, side="right")) - 1
            if at != group:  # one row group held at a time
                group = at
                rows = parquet.read_row_group(at)
            assert rows is not None
            end = min(stop, int(bounds[at + 1]))
            pieces.append(rows.slice(row - int(bounds[at]), end - row))
            row = end
    return pa.concat_tables(pieces) if pieces else parquet.schema_arrow.empty_table()


def _node_file(store: ArtifactStore, key: str) -> Path:
    """The specs file on this machine: in place for a local store, else a kept download."""
    local = local_path(store, key)
    if local is not None:
        return local
    uri = store.uri(key)
    with _LOCK:
        kept = _COPIES.get(uri)
        if kept is not None and kept.exists():
            _COPIES.move_to_end(uri)
            return kept
        if not _FOLDER:
            _FOLDER.append(Path(tempfile.mkdtemp(prefix="scythe-node-specs-")))
        path = store.get_file(key, _FOLDER[0] / f"{len(_COPIES)}-{abs(hash(uri)):x}.pq")
        _COPIES[uri] = path
        while len(_COPIES) > KEPT_COPIES:
            _, dropped = _COPIES.popitem(last=False)
            dropped.unlink(missing_ok=True)
        return path
