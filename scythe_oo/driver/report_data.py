"""What the report shows, read from a run folder without ever holding a whole table.

A run of 10^6 leaves must report in well under a GiB, so the final tables are read one column
at a time: each column's exact figures (counts, histograms) are taken, and its values at the
same random rows are kept for the plots and the sensitivity ranking. The failures table is
read a batch at a time, because a run in which everything failed has 10^6 error messages.
"""

from __future__ import annotations

import collections
import contextlib
import math
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.definition.schema import INDEX_PREFIX
from scythe_oo.driver.sensitivity import Columns, Influence, rank_inputs
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest
from scythe_oo.runfolder.tables import open_parquet
from scythe_oo.storage.base import ArtifactStore

SAMPLE_ROWS = 100_000
"""Rows drawn at random for plots and sensitivity; counts and histograms use every row."""

MAX_CATEGORIES = 20
"""A categorical input's box plot shows its most frequent values, at most this many."""

LISTED_INDEXES = 50
"""Sort indexes listed per error type; the count says how many more there are."""

HISTOGRAM_BINS = 40


@attrs.frozen
class Histogram:
    """Exact counts: numeric bins (``edges`` one longer than ``counts``) or labelled bars."""

    counts: np.ndarray
    edges: np.ndarray | None = None
    labels: list[str] | None = None
    missing: int = 0
    """Rows without a value (null or NaN)."""


@attrs.frozen
class FailureGroup:
    """The failures that share an error type."""

    error_type: str
    count: int
    message: str
    sort_indexes: list[int]


@attrs.frozen
class LeafTimes:
    """leaf_stats, summarised: how long leaves took, their memory, when they finished."""

    durations: Histogram
    memory: Histogram
    throughput_start: np.ndarray
    """Start of each throughput bin (datetime64, UTC)."""
    throughput_per_minute: np.ndarray
    bin_seconds: float
    total: int


@attrs.frozen
class ReportData:
    """Everything the report renders."""

    manifest: Manifest
    uri: str
    rows: int
    numeric_inputs: list[str]
    categorical_inputs: list[str]
    outputs: list[str]
    histograms: dict[str, Histogram]
    sample: pd.DataFrame
    sensitivity: dict[str, list[Influence]]
    failures: list[FailureGroup]
    leaves: LeafTimes | None


def gather_report_data(
    store: ArtifactStore, layout: RunLayout, manifest: Manifest, *, seed: int = 0
) -> ReportData:
    """Read the run's final tables into what the report shows."""
    with open_parquet(store, layout.final("scalars")) as scalars:
        meta = scalars.schema_arrow.pandas_metadata or {}
        index = [c for c in meta.get("index_columns", []) if isinstance(c, str)]
        inputs = [c for c in index if c not in INDEX_PREFIX]
        outputs = [c for c in scalars.schema_arrow.names if c not in index]
        types = {f.name: f.type for f in scalars.schema_arrow}
        numeric_inputs = [c for c in inputs if _is_number(types[c])]
        categorical_inputs = [c for c in inputs if c not in numeric_inputs]
        rows = scalars.metadata.num_rows
        rng = np.random.default_rng(seed)
        positions = np.sort(rng.choice(rows, size=min(rows, SAMPLE_ROWS), replace=False))
        sample: dict[str, Any] = {}
        histograms: dict[str, Histogram] = {}
        for name in [*inputs, *outputs]:
            column = scalars.read(columns=[name]).column(0)
            if name in outputs:
                histograms[name] = _histogram(column, numeric=_is_number(types[name]))
            sample[name] = _plain(column.take(pa.array(positions, type=pa.int64())))
            del column
    frame = pd.DataFrame(sample)
    sobol = _sobol_inputs(manifest)
    columns = Columns(frame)
    sensitivity = {
        name: rank_inputs(frame, name, numeric_inputs, categorical_inputs, sobol, columns)
        for name in outputs
        if _is_number(types[name]) and len(frame)
    }
    return ReportData(
        manifest=manifest,
        uri=store.uri(layout.root),
        rows=rows,
        numeric_inputs=numeric_inputs,
        categorical_inputs=categorical_inputs,
        outputs=outputs,
        histograms=histograms,
        sample=frame,
        sensitivity=sensitivity,
        failures=_failures(store, layout),
        leaves=_leaf_times(store, layout),
    )


def _is_number(kind: pa.DataType) -> bool:
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


def _plain(column: pa.ChunkedArray) -> Any:
    """A column as numpy (numbers) or pandas-friendly objects (everything else)."""
    if _is_number(column.type):
        return column.to_numpy().astype(float)  # nulls become NaN
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.to_pandas().astype(str).to_numpy()


def _histogram(column: pa.ChunkedArray, *, numeric: bool) -> Histogram:
    if not numeric:
        top = collections.Counter(str(v) for v in column.to_pylist()).most_common(MAX_CATEGORIES)
        return Histogram(np.array([c for _, c in top]), labels=[k for k, _ in top])
    values = column.to_numpy().astype(float)
    finite = values[np.isfinite(values)]
    missing = len(values) - len(finite)
    if not len(finite):
        return Histogram(np.zeros(0), edges=np.zeros(1), missing=missing)
    low, high = float(finite.min()), float(finite.max())
    if low == high:
        low, high = low - 0.5, high + 0.5
    counts, edges = np.histogram(finite, bins=HISTOGRAM_BINS, range=(low, high))
    return Histogram(counts, edges=edges, missing=missing)


def _sobol_inputs(manifest: Manifest) -> list[str] | None:
    """The sampled inputs of a Sobol' design; None for any other run."""
    design = manifest.design or {}
    if design.get("method") != "sobol":
        return None
    return list(design.get("dimensions", {}))


def _failures(store: ArtifactStore, layout: RunLayout) -> list[FailureGroup]:
    """Failures by error type, most frequent first: a count, the first sort indexes and one
    message each. Two passes over small columns; messages are read only until each type has
    one, which is usually the first batch."""
    counts: collections.Counter[str] = collections.Counter()
    indexes: dict[str, list[int]] = collections.defaultdict(list)
    messages: dict[str, str] = {}
    with _maybe_parquet(store, layout.final("failures")) as failures:
        if failures is None or failures.metadata.num_rows == 0:
            return []
        for batch in failures.iter_batches(columns=["error_type", "sort_index"]):
            for kind, index in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                counts[kind] += 1
                if len(indexes[kind]) < LISTED_INDEXES:
                    indexes[kind].append(index)
        columns = ["error_type", "error_message"]
        for batch in failures.iter_batches(batch_size=1024, columns=columns):
            for kind, message in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                messages.setdefault(kind, message or "")
            if len(messages) == len(counts):
                break
    return [
        FailureGroup(str(kind), count, messages.get(kind, ""), indexes[kind])
        for kind, count in counts.most_common()
    ]


@contextlib.contextmanager
def _maybe_parquet(store: ArtifactStore, key: str) -> Iterator[pq.ParquetFile | None]:
    """A final table that older run folders may lack (leaf_stats): None when it is missing."""
    try:
        with open_parquet(store, key) as parquet:
            yield parquet
    except ArtifactNotFoundError:
        yield None


def _leaf_times(store: ArtifactStore, layout: RunLayout) -> LeafTimes | None:
    with _maybe_parquet(store, layout.final("leaf_stats")) as stats:
        if stats is None or stats.metadata.num_rows == 0:
            return None
        table = stats.read(columns=["wall_time", "peak_rss_mib", "finished_at"])
    wall = _histogram(table.column("wall_time"), numeric=True)
    memory = _histogram(table.column("peak_rss_mib"), numeric=True)
    finished = table.column("finished_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
    finished = finished[finished > 0]
    starts, per_minute, width = _throughput(finished)
    return LeafTimes(wall, memory, starts, per_minute, width, table.num_rows)


def _throughput(finished_us: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Leaves finished per minute, in up to 60 bins of whole seconds over the run."""
    if not len(finished_us):
        return np.zeros(0, dtype="datetime64[us]"), np.zeros(0), 1.0
    first, last = int(finished_us.min()), int(finished_us.max())
    span = max(last - first, 1)
    width = max(1_000_000, math.ceil(span / 60 / 1_000_000) * 1_000_000)  # whole seconds
    bins = max(1, math.ceil((span + 1) / width))
    counts = np.bincount((finished_us - first) // width, minlength=bins)[:bins]
    starts = (first + width * np.arange(bins)).astype("datetime64[us]")
    return starts, counts * (60_000_000 / width), width / 1e6
