"""Specs files: a sampled design written to Parquet, to inspect, share, estimate or allocate.

``scythe-oo sample`` writes one and ``scythe-oo estimate`` reads one. Each row is a spec: one
readable column per indexed input (what pandas shows), and ``__spec__``, the spec as JSON,
which is what is read back, so a spec survives the round trip exactly. The design travels in
the file's metadata, so specs read back still say how they were drawn. Both directions go a
chunk at a time: a 10^6-spec file is never 10^6 pydantic objects.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.design import Design, SpecChunks
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.sampling import CHUNK_ROWS, MAX_GRID, sample_specs
from scythe_oo.definition.schema import typed_column
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.runfolder.tables import parquet_writer, stream_parquet
from scythe_oo.storage.atomic import atomic_destination

SPEC_COLUMN = "__spec__"
DESIGN_META = b"scythe.design"
"""Schema metadata of a specs file: its Design as JSON."""


def write_sample_file(
    experiment: AnyExperiment,
    n: int | None,
    path: str | Path,
    *,
    method: str = "lhs",
    seed: int = 0,
    fixed: Mapping[str, Any] | None = None,
    choices: Mapping[str, Sequence[Any]] | None = None,
    ranges: Mapping[str, tuple[float, float]] | None = None,
    levels: int | Mapping[str, int] | None = None,
    max_grid: int = MAX_GRID,
    chunk_size: int = CHUNK_ROWS,
) -> Path:
    """Sample ``n`` specs of ``experiment`` (as ``MyInput.sample``) into a Parquet file at
    ``path``, written whole or not at all; returns the path."""
    chunks = sample_specs(
        experiment.schema.input_type,
        n,
        method,
        seed=seed,
        fixed=fixed,
        choices=choices,
        ranges=ranges,
        levels=levels,
        max_grid=max_grid,
        chunk_size=chunk_size,
    )
    assert isinstance(chunks, SpecChunks)  # a chunk_size always gives chunks
    path = Path(path)
    tables = (_table(experiment, chunk) for chunk in chunks)
    first = next(tables)
    meta = {DESIGN_META: json.dumps(chunks.design.to_dict()).encode()}
    schema = first.schema.with_metadata(meta)
    with (
        atomic_destination(path) as tmp,
        parquet_writer(tmp, schema) as writer,
    ):
        writer.write_table(first.replace_schema_metadata(meta))
        for table in tables:
            writer.write_table(table.cast(schema))
    return path


def _table(experiment: AnyExperiment, specs: Sequence[ExperimentInputSpec]) -> pa.Table:
    schema = experiment.schema
    columns = {
        plan.name: typed_column(plan, [getattr(spec, plan.name) for spec in specs])
        for plan in schema.indexed_inputs
    }
    exclude = set(ExperimentInputSpec.BOOKKEEPING_FIELDS)
    columns[SPEC_COLUMN] = pa.array(
        [spec.model_dump_json(exclude=exclude) for spec in specs], type=pa.string()
    )
    return pa.table(columns)


def specs_from_file(experiment: AnyExperiment, path: str | Path) -> Any:
    """What ``allocate`` and ``estimate`` should take for a specs file: the specs of a file
    written by ``write_sample_file`` (so the run records their design), else the path itself,
    which allocate reads as one spec per row (Parquet, CSV) or line (JSON lines)."""
    path = Path(path)
    if path.suffix.lower() in (".pq", ".parquet"):
        schema = pq.read_schema(path)
        if SPEC_COLUMN in schema.names and DESIGN_META in (schema.metadata or {}):
            return read_sample_file(experiment, path)
    return path


def read_sample_file(
    experiment: AnyExperiment, path: str | Path, *, chunk_size: int = CHUNK_ROWS
) -> SpecChunks[Any]:
    """The specs of a file written by ``write_sample_file``, validated a chunk at a time as
    they are iterated, with the design they were drawn with."""
    path = Path(path)
    parquet = pq.ParquetFile(path)
    raw = (parquet.schema_arrow.metadata or {}).get(DESIGN_META)
    if raw is None or SPEC_COLUMN not in parquet.schema_arrow.names:
        raise SpecValidationError(
            f"{path} is not a specs file (no design or {SPEC_COLUMN} column); write one with "
            "write_sample_file or `scythe-oo sample`."
        )
    design = Design.from_dict(json.loads(raw))
    input_type = experiment.schema.input_type
    expected = f"{input_type.__module__}:{input_type.__qualname__}"
    if design.input_class != expected:
        raise SpecValidationError(
            f"{path} holds specs of {design.input_class}, but {experiment.name} takes "
            f"{expected}; sample specs for this experiment."
        )
    adapter = experiment.schema.spec_list

    def produce() -> Iterator[list[Any]]:
        with stream_parquet(path) as source:
            for batch in source.iter_batches(batch_size=chunk_size, columns=[SPEC_COLUMN]):
                text = batch.column(0).to_pylist()
                yield adapter.validate_json(f"[{','.join(text)}]")

    return SpecChunks(produce, parquet.metadata.num_rows, design)
