"""specs.pq: every spec of a run, as index columns plus the spec itself as JSON.

The index columns (experiment_id, sort_index, root_workflow_run_id, the indexed inputs and the
computed features) are what every results table is indexed by; the ``__spec__`` column holds
each spec in the exact JSON form a leaf validates again (inf and NaN included), or null where
the index columns are the whole spec (a plain model taken as columns: ``spec_columns``). Writing and
reading the format lives here, so allocate, the tree and the engines agree on it.

Specs are encoded before their run folder exists (so that a value Parquet or JSON cannot hold
is an error before anything is written), which leaves two things to fill in later: the run's
ids, spliced into each spec's JSON, and the store URIs of uploaded input files, which stand in
the encoding as upload tokens until the files are uploaded.
"""

from __future__ import annotations

import enum
import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.plain import plain_inputs, values_of
from scythe_oo.definition.schema import (
    INDEX_PREFIX,
    ExperimentSchema,
    FieldKind,
    FieldPlan,
    typed_column,
)
from scythe_oo.definition.spec import ExperimentInputSpec

SPEC_COLUMN = "__spec__"
"""Column of specs.pq holding each spec as JSON, the exact form leaves re-validate; null where
the spec's columns hold it (read it with ``spec_columns.spec_json``)."""

TAIL_COLUMN = "__tail__"
"""Column of an encoded chunk: each spec's JSON without its opening brace and bookkeeping."""

SPECS_CHUNK_ROWS = 50_000
"""Specs encoded and written per chunk: allocate holds one chunk's Arrow columns."""

UPLOAD_TOKEN = "scythe-upload:"
"""Marks a local input file in an encoded spec until its uploaded URI is known."""

_TOKEN = re.compile(re.escape(UPLOAD_TOKEN) + r"[0-9a-f]{8}")

ARROW_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    UnicodeError,
    TypeError,
    ValueError,
)
"""What building an Arrow array of values it cannot hold raises."""


def upload_token(number: int) -> str:
    return f"{UPLOAD_TOKEN}{number:08x}"


def index_names(specs: pa.Table) -> list[str]:
    """The index columns of a specs table: everything but the spec JSON."""
    return [c for c in specs.column_names if c != SPEC_COLUMN]


@attrs.frozen
class Unstorable:
    """A value that passed validation but cannot be written to specs.pq."""

    position: int
    field: str
    reason: str


class UnstorableValues(ValueError):
    """Raised by ``encode_chunk`` with every value of the chunk it could not encode."""

    def __init__(self, found: list[Unstorable]) -> None:
        super().__init__(f"{len(found)} value(s) cannot be stored")
        self.found = found


def encode_chunk(
    schema: ExperimentSchema,
    specs: Sequence[Any],
    computed: Sequence[str],
    first: int,
    tokens: Sequence[int] | None = None,
) -> pa.Table:
    """Validated specs (the first at position ``first``) as an encoded chunk: their index
    columns, computed features and JSON tails. ``tokens`` is how many upload tokens each
    spec's JSON must hold; anything Parquet or JSON cannot store raises UnstorableValues."""
    found: list[Unstorable] = []
    columns: dict[str, pa.Array] = {}
    plans = schema.indexed_inputs
    # Every spec's indexed values in one pass, then transposed: a spec's fields live in its
    # __dict__, and one itemgetter call per spec costs a tenth of ten getattr passes.
    fetch = values_of([plan.name for plan in plans])
    by_plan = list(zip(*(fetch(spec.__dict__) for spec in specs), strict=True))
    for at, plan in enumerate(plans):
        columns[plan.name] = _column(plan, list(by_plan[at]) if by_plan else [], first, found)
    if computed:
        rows = [spec.computed_features for spec in specs]
        for name in computed:
            columns[name] = _feature(name, [_plain(row[name]) for row in rows], first, found)
    if not found and not computed and _columns_hold_specs(schema, columns):
        columns[TAIL_COLUMN] = pa.nulls(len(specs), pa.string())  # see spec_columns
    else:
        columns[TAIL_COLUMN] = _tails(schema, specs, first, tokens, found)
    if found:
        raise UnstorableValues(found)
    return pa.table(columns)


def _columns_hold_specs(schema: ExperimentSchema, columns: Mapping[str, pa.Array]) -> bool:
    """Whether a chunk's index columns are the whole of its specs, so that it needs no JSON:
    every field of a plain model is a column, and every float is finite (the JSON written
    from the columns keeps inf and NaN only as the row path writes them)."""
    fields = plain_inputs(schema.input_type)
    if fields is None or set(columns) != {field.name for field in fields}:
        return False
    return all(
        pc.all(pc.is_finite(columns[field.name])).as_py() is not False
        for field in fields
        if field.kind is float
    )


def _column(plan: FieldPlan, values: list[Any], first: int, found: list[Unstorable]) -> pa.Array:
    try:
        return typed_column(plan, values)
    except ARROW_ERRORS:
        pass  # find which values, below
    for offset, value in enumerate(values):
        try:
            typed_column(plan, [value])
        except ARROW_ERRORS as exc:
            reason = f"{value!r:.60} cannot be stored as {plan.arrow_type} ({_short(exc)})"
            found.append(Unstorable(first + offset, plan.name, reason))
    return pa.nulls(len(values), plan.arrow_type)


def _feature(name: str, values: list[Any], first: int, found: list[Unstorable]) -> pa.Array:
    try:
        return pa.array(values)
    except ARROW_ERRORS:
        pass
    kinds: dict[str, int] = {}
    for offset, value in enumerate(values):
        if value is not None:
            kinds.setdefault(type(value).__name__, first + offset)
    if len(kinds) > 1:
        described = ", ".join(f"{kind} for spec #{where}" for kind, where in kinds.items())
        reason = f"gives values of different types ({described}); return one type"
        found.append(Unstorable(min(kinds.values()), name, reason))
        return pa.nulls(len(values))
    for offset, value in enumerate(values):
        try:
            pa.array([value])
        except ARROW_ERRORS as exc:
            reason = f"{value!r:.60} cannot be stored ({_short(exc)})"
            found.append(Unstorable(first + offset, name, reason))
    return pa.nulls(len(values))


def _tails(
    schema: ExperimentSchema,
    specs: Sequence[Any],
    first: int,
    tokens: Sequence[int] | None,
    found: list[Unstorable],
) -> pa.Array:
    # Bookkeeping is spliced into the JSON rather than copied into each model: for 10^6
    # specs the copies would cost more than everything else allocate does.
    exclude = set(_json_exclude(schema.input_type))
    to_json = schema.input_type.__pydantic_serializer__.to_json  # model_dump_json, unwrapped
    try:
        bodies = pa.array([to_json(s, exclude=exclude, warnings=False) for s in specs], pa.binary())
        array = bodies.cast(pa.string())
    except Exception:  # a lone surrogate, say: name the spec and the field that holds it
        return _tails_one_by_one(specs, exclude, first, tokens, found)
    # '{"x":1}' becomes ',"x":1}' and '{}' becomes '}', column-wise
    rest = pc.utf8_slice_codeunits(array, 1)
    array = pc.if_else(pc.equal(array, "{}"), rest, pc.binary_join_element_wise(",", rest, ""))
    return _check_tokens(array, first, tokens, found)


def _tails_one_by_one(
    specs: Sequence[Any],
    exclude: set[str],
    first: int,
    tokens: Sequence[int] | None,
    found: list[Unstorable],
) -> pa.Array:
    to_json = type(specs[0]).__pydantic_serializer__.to_json
    tails: list[str | None] = []
    for offset, spec in enumerate(specs):
        try:
            body = to_json(spec, exclude=exclude, warnings=False).decode()
        except Exception as exc:
            field, reason = _json_problem(spec, exclude, exc)
            found.append(Unstorable(first + offset, field, reason))
            tails.append(None)
            continue
        tails.append(body[1:] if body == "{}" else "," + body[1:])
    try:
        array = pa.array(tails, type=pa.string())
    except ARROW_ERRORS as exc:
        found.append(Unstorable(first, "<spec>", f"cannot be stored as text ({_short(exc)})"))
        return pa.nulls(len(tails), pa.string())
    return _check_tokens(array, first, tokens, found)


def _check_tokens(
    array: pa.Array, first: int, tokens: Sequence[int] | None, found: list[Unstorable]
) -> pa.Array:
    if tokens is None:
        return array  # no file fields: no token is ever replaced, whatever the text holds
    counted = pc.count_substring(array, UPLOAD_TOKEN).to_pylist()
    for offset, (got, want) in enumerate(zip(counted, tokens, strict=True)):
        if got is not None and got != want:
            reason = f"a text value contains {UPLOAD_TOKEN!r}, which scythe_oo reserves"
            found.append(Unstorable(first + offset, "<spec>", reason))
    return array


def _json_problem(spec: Any, exclude: set[str], exc: Exception) -> tuple[str, str]:
    for name in type(spec).model_fields:
        if name in exclude:
            continue
        try:
            spec.model_dump_json(include={name}, warnings=False)
        except Exception as inner:
            return name, f"cannot be written as JSON ({_short(inner)})"
    return "<spec>", f"cannot be written as JSON ({_short(exc)})"


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


@functools.cache
def _json_exclude(input_type: type[ExperimentInputSpec]) -> frozenset[str]:
    return frozenset(ExperimentInputSpec.BOOKKEEPING_FIELDS) | frozenset(
        input_type.model_computed_fields
    )


def specs_table(
    schema: ExperimentSchema,
    encoded: pa.Table,
    start: int,
    experiment_id: str,
    run_id: str,
    uploaded: Mapping[str, str],
) -> pa.Table:
    """One chunk of specs.pq, its first spec at position ``start``: the run's ids and each
    spec's position are spliced into the encoded JSON, column-wise, and upload tokens become
    the uploaded files' URIs."""
    n = encoded.num_rows
    columns: dict[str, Any] = {
        "experiment_id": pa.repeat(pa.scalar(experiment_id, pa.string()), n),
        "sort_index": pa.array(np.arange(start, start + n, dtype=np.int64)),
        "root_workflow_run_id": pa.repeat(pa.scalar(run_id, pa.string()), n),
    }
    tails = encoded.column(TAIL_COLUMN).combine_chunks()
    # A plain model's specs keep no JSON (every tail is null, see spec_columns): joining the
    # heads to nulls would give nulls, after 0.2 s per 10^6 specs spent writing the heads.
    payloads = (
        pa.nulls(n, pa.string())
        if tails.null_count == n
        else pc.binary_join_element_wise(json_heads(columns), tails, "")
    )
    kinds = {plan.name: plan.kind for plan in schema.file_inputs}
    for name in encoded.column_names:
        if name == TAIL_COLUMN:
            continue
        column = encoded.column(name)
        if name in kinds and uploaded:
            # A file list's cell is a JSON array; a single file's cell is the URI itself.
            column = _with_uris(column, uploaded, as_json=kinds[name] is FieldKind.FILE_LIST)
        columns[name] = column
    columns[SPEC_COLUMN] = _with_uris(payloads, uploaded, as_json=True) if uploaded else payloads
    return pa.table(columns)


def json_heads(columns: Mapping[str, Any]) -> pa.Array:
    """Each spec's JSON up to its own fields: the bookkeeping allocate fills in (the
    ``INDEX_PREFIX`` columns of ``columns``), the same whenever a spec's JSON is written."""
    experiment_id, sort_index, root = (columns[name] for name in INDEX_PREFIX)
    return pc.binary_join_element_wise(
        '{"experiment_id":',
        _json_texts(experiment_id),
        ',"root_workflow_run_id":',
        _json_texts(root),
        ',"sort_index":',
        pc.cast(sort_index, pa.string()),
        "",
    )


def _json_texts(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A column of strings (nulls included) as JSON values: each distinct value is encoded
    once, as a run's ids repeat on every row."""
    distinct = pc.unique(column)
    texts = pa.array([json.dumps(value) for value in distinct.to_pylist()], pa.string())
    return texts.take(pc.index_in(column, value_set=distinct, skip_nulls=False))


def _with_uris(column: Any, uploaded: Mapping[str, str], *, as_json: bool) -> pa.Array:
    """``column`` with every upload token replaced by its file's URI (escaped for JSON when
    the token sits in a JSON string); rows without a token (remote references) stay as
    they are."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pc.any(pc.match_substring(array, UPLOAD_TOKEN)).as_py():
        return array

    def swap(match: re.Match[str]) -> str:
        uri = uploaded[match.group(0)]
        return json.dumps(uri)[1:-1] if as_json else uri

    return pa.array(
        [None if v is None else _TOKEN.sub(swap, v) for v in array.to_pylist()], type=pa.string()
    )


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value
