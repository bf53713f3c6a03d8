"""specs.pq: every spec of a run, as index columns plus the spec itself as JSON.

The index columns (experiment_id, sort_index, root_workflow_run_id, the indexed inputs and the
computed features) are what every results table is indexed by; the ``__spec__`` column holds
each spec in the exact JSON form a leaf validates again. Writing and reading the format lives
here, so allocate, the tree and the engines agree on it.
"""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.schema import ExperimentSchema, typed_column
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.runfolder.tables import conform, parquet_sink, write_table

if TYPE_CHECKING:
    from scythe_oo.storage.base import ArtifactStore

SPEC_COLUMN = "__spec__"
"""Column of specs.pq holding each spec as JSON, the exact form leaves re-validate."""

SPECS_CHUNK_ROWS = 50_000
"""Specs turned into Arrow and written per chunk: allocate holds one chunk's Python objects."""


def index_names(specs: pa.Table) -> list[str]:
    """The index columns of a specs table: everything but the spec JSON."""
    return [c for c in specs.column_names if c != SPEC_COLUMN]


def spec_json(table: pa.Table) -> list[str]:
    """Each spec of a specs table, as the JSON a leaf validates."""
    return [str(s) for s in table.column(SPEC_COLUMN).to_pylist()]


@attrs.frozen
class EncodedChunk:
    """specs.pq columns for a run of consecutive specs, before the run folder is known.

    ``index`` holds one Arrow array per indexed input; ``computed`` the plain values of each
    computed feature, typed only when a whole chunk of specs.pq is built (by their values, so
    every chunk of specs.pq gets one type); ``tails`` each spec's JSON without its opening
    brace and bookkeeping fields, which are spliced in once the run's ids exist.
    """

    index: dict[str, pa.Array]
    computed: dict[str, list[Any]]
    tails: pa.Array


def encode_chunk(
    schema: ExperimentSchema, specs: Sequence[Any], computed: Sequence[str]
) -> EncodedChunk:
    """One chunk of validated specs as specs.pq columns, built column by column."""
    index: dict[str, pa.Array] = {}
    for plan in schema.indexed_inputs:
        name = plan.name
        index[name] = typed_column(plan, [getattr(spec, name) for spec in specs])
    features: dict[str, list[Any]] = {}
    if computed:
        rows = [spec.computed_features for spec in specs]
        for name in computed:
            features[name] = [_plain(row[name]) for row in rows]
    # Bookkeeping is spliced into the JSON rather than copied into each model: for 10^6
    # specs the copies would cost more than everything else allocate does.
    exclude = set(_json_exclude(schema.input_type))
    to_json = schema.input_type.__pydantic_serializer__.to_json  # model_dump_json, unwrapped
    tails = []
    for spec in specs:
        body = to_json(spec, exclude=exclude).decode()
        tails.append(body[1:] if body == "{}" else "," + body[1:])
    return EncodedChunk(index, features, pa.array(tails, type=pa.string()))


@functools.cache
def _json_exclude(input_type: type[ExperimentInputSpec]) -> frozenset[str]:
    return frozenset(ExperimentInputSpec.BOOKKEEPING_FIELDS) | frozenset(
        input_type.model_computed_fields
    )


def specs_table(
    schema: ExperimentSchema,
    encoded: Sequence[EncodedChunk],
    start: int,
    computed: Sequence[str],
    experiment_id: str,
    run_id: str,
) -> pa.Table:
    """One chunk of specs.pq, its first spec at position ``start``: the run's ids and each
    spec's position are spliced into the encoded JSON here, column-wise."""
    n = sum(len(chunk.tails) for chunk in encoded)
    head = (
        f'{{"experiment_id":{json.dumps(experiment_id)},"root_workflow_run_id":{json.dumps(run_id)}'
        ',"sort_index":'
    )
    sort_index = pa.array(range(start, start + n), type=pa.int64())
    tails = pa.chunked_array([chunk.tails for chunk in encoded], type=pa.string())
    payloads = pc.binary_join_element_wise(
        head, pc.cast(sort_index, pa.string()), tails.combine_chunks(), ""
    )
    columns: dict[str, pa.Array] = {
        "experiment_id": pa.array([experiment_id] * n, type=pa.string()),
        "sort_index": sort_index,
        "root_workflow_run_id": pa.array([run_id] * n, type=pa.string()),
    }
    for plan in schema.indexed_inputs:
        pieces = [chunk.index[plan.name] for chunk in encoded]
        columns[plan.name] = pa.chunked_array(pieces, type=plan.arrow_type).combine_chunks()
    for name in computed:
        columns[name] = pa.array([value for chunk in encoded for value in chunk.computed[name]])
    columns[SPEC_COLUMN] = payloads
    return pa.table(columns)


def write_specs(store: ArtifactStore, key: str, chunks: Callable[[], Iterator[pa.Table]]) -> None:
    """Write specs.pq a chunk at a time, in the first chunk's schema.

    Computed features are typed by their values, so a later chunk can disagree with the first
    (ints, then floats). Then the chunks are built again and unified in memory: slower, but
    the types are the same as if the whole sweep had been one chunk.
    """
    stream = chunks()
    first = next(stream)
    try:
        with parquet_sink(store, key, first.schema) as writer:
            writer.write_table(first)
            for table in stream:
                writer.write_table(conform(table, first.schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        del first, stream
        write_table(store, key, pa.concat_tables(list(chunks()), promote_options="permissive"))


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value
