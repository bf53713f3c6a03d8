"""Where specs come from: a list, a generator, tables, files, the sampler.

A sweep of 10^7 specs does not fit in memory as pydantic objects, so ``allocate`` takes specs
as a stream and validates them a chunk at a time. This module turns whatever the caller
passes into that stream: lists of raw items (specs, or dicts of field values), never more
than one chunk at once. Tables (a DataFrame, an Arrow table, a Parquet file) of plain scalar
inputs stay columns (``ColumnChunk``), checked and encoded a column at a time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import pandas as pd
import pyarrow as pa

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.design import SpecChunks
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.runfolder.spec_columns import column_fields, takes_columns
from scythe_oo.runfolder.specs import ARROW_ERRORS
from scythe_oo.runfolder.tables import stream_parquet

CHUNK_ROWS = 4096
"""Specs validated and encoded per step: few enough that no copy of a large sweep is held."""

SPEC_FILES = {".pq": "parquet", ".parquet": "parquet", ".csv": "csv", ".jsonl": "jsonl"}
"""Spec files allocate reads, by suffix: one row (or line) per spec."""


@attrs.frozen
class ColumnChunk:
    """Consecutive specs still in columns, with the way back to rows should a value need
    checking one spec at a time (``runfolder.spec_columns.encode_columns`` declines)."""

    table: pa.Table
    frame: pd.DataFrame | None = None
    """The DataFrame rows the table came from: their values, not Arrow's, are what the
    row-by-row path validates (pandas' NaN is a float; Arrow made it a null)."""

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def rows(self) -> list[Any]:
        if self.frame is not None:
            return next(_frame_chunks(self.frame, len(self.frame)), [])
        return list(self.table.to_pylist())


Chunk = list[Any] | ColumnChunk
"""Consecutive specs: raw items, or columns of a table."""


def spec_chunks(cls: AnyExperiment, specs: Any, rows: int = CHUNK_ROWS) -> Iterator[Chunk]:
    """``specs`` as consecutive lists of at most ``rows`` raw items, in order.

    Accepted: one spec; a sequence, iterable or generator of specs (or of dicts of field
    values); an iterable of chunks (lists of specs, or DataFrames, as the sampler yields); a
    pandas DataFrame or Arrow table (one row per spec); a path to a Parquet, CSV or JSON-lines
    file.
    """
    if isinstance(specs, ExperimentInputSpec):
        yield [specs]
        return
    if isinstance(specs, str | Path) and Path(specs).suffix.lower() in SPEC_FILES:
        yield from _file_chunks(cls, Path(specs), rows)
        return
    if isinstance(specs, pd.DataFrame):
        yield from _frame_columns(cls, specs, rows)
        return
    if isinstance(specs, pa.Table):
        yield from _arrow_chunks(cls, specs.schema, specs.to_batches(max_chunksize=rows))
        return
    blocks = _sampled_columns(cls, specs)
    if blocks is not None:
        for block in blocks:
            try:
                table = pa.table(block)
            except ARROW_ERRORS:  # a pinned value Arrow cannot hold: validate it row by row
                yield from _rechunked(iter(_block_rows(block)), rows)
                continue
            yield from _arrow_chunks(cls, table.schema, table.to_batches(max_chunksize=rows))
        return
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Iterable):
        raise SpecValidationError(
            f"{cls.name}.allocate expects a {cls.schema.input_type.__name__}, a sequence or "
            "generator of them, a DataFrame (one row per spec) or a .pq/.csv/.jsonl file, got "
            f"{type(specs).__name__}{' ' + repr(specs)[:60] if isinstance(specs, str) else ''}."
        )
    if isinstance(specs, Sequence) and not (
        specs and isinstance(specs[0], list | tuple | pd.DataFrame)
    ):  # a plain list of specs: sliced, not walked item by item
        for start in range(0, len(specs), rows):
            yield list(specs[start : start + rows])
        return
    yield from _rechunked(_items(specs, rows), rows)


def _sampled_columns(cls: AnyExperiment, specs: Any) -> Iterator[dict[str, Any]] | None:
    """The sampler's chunked output for this experiment's plain model, as blocks of columns
    (see ``SpecChunks.column_blocks``): taken as a table's, with no spec object per row."""
    input_type: type[ExperimentInputSpec] = cls.schema.input_type
    if (
        not isinstance(specs, SpecChunks)
        or column_fields(input_type) is None
        or specs.model is not input_type
    ):
        return None
    return specs.column_blocks()


def _block_rows(block: dict[str, Any]) -> list[dict[str, Any]]:
    names = list(block)
    return [dict(zip(names, values, strict=True)) for values in zip(*block.values(), strict=True)]


def _items(specs: Iterable[Any], rows: int) -> Iterator[Any]:
    for item in specs:
        if isinstance(item, pd.DataFrame):
            for chunk in _frame_chunks(item, rows):
                yield from chunk
        elif isinstance(item, list | tuple):  # a chunk of specs, as the sampler yields
            yield from item
        else:
            yield item


def _rechunked(items: Iterator[Any], rows: int) -> Iterator[list[Any]]:
    while chunk := list(itertools.islice(items, rows)):
        yield chunk


def _frame_chunks(
    frame: pd.DataFrame, rows: int, *, empty_is_default: bool = False
) -> Iterator[list[dict[str, Any]]]:
    """Rows as dicts of field values. A named index holds fields too (a results table's index
    is the inputs); a plain RangeIndex is only the row number. ``empty_is_default`` leaves
    out missing values (a CSV file's empty cells), so that those fields take their default."""
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    text = [name for name in frame.columns if frame[name].dtype == object]
    for start in range(0, len(frame), rows):
        part = frame.iloc[start : start + rows]
        if text:  # pandas fills gaps in text columns with NaN; a missing value is None
            part = part.astype({name: object for name in text})
            part[text] = part[text].where(part[text].notna(), None)
        records = part.to_dict("records")
        if empty_is_default:
            yield [{str(k): v for k, v in r.items() if not _missing(v)} for r in records]
        else:
            yield [{str(k): v for k, v in record.items()} for record in records]


def _frame_columns(cls: AnyExperiment, frame: pd.DataFrame, rows: int) -> Iterator[Chunk]:
    """A DataFrame's rows as ColumnChunks where its columns allow, else as dicts."""
    if any(name is not None for name in frame.index.names):
        frame = frame.reset_index()
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except ARROW_ERRORS:
        table = None  # mixed objects in a column, say: the row path names them
    if table is None or not takes_columns(cls.schema, table.schema):
        yield from _frame_chunks(frame, rows)
        return
    for start in range(0, len(frame), rows):
        yield ColumnChunk(table.slice(start, rows), frame.iloc[start : start + rows])


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _arrow_chunks(
    cls: AnyExperiment, schema: pa.Schema, batches: Iterable[pa.RecordBatch]
) -> Iterator[Chunk]:
    columns = takes_columns(cls.schema, schema)
    for batch in batches:
        if batch.num_rows:
            yield ColumnChunk(pa.Table.from_batches([batch])) if columns else batch.to_pylist()


def _file_chunks(cls: AnyExperiment, path: Path, rows: int) -> Iterator[Chunk]:
    if not path.is_file():
        raise SpecValidationError(f"{cls.name}.allocate: the specs file {path} does not exist.")
    kind = SPEC_FILES[path.suffix.lower()]
    if kind == "parquet":
        with stream_parquet(path) as parquet:
            batches = parquet.iter_batches(batch_size=rows)
            yield from _arrow_chunks(cls, parquet.schema_arrow, batches)
    elif kind == "csv":
        for frame in pd.read_csv(path, chunksize=rows):
            yield from _frame_chunks(frame, rows, empty_is_default=True)
    else:  # each line as JSON reads it: a key left out takes the field's default
        with path.open(encoding="utf-8") as lines:
            records = (json.loads(line) for line in lines if line.strip())
            yield from _rechunked(records, rows)
