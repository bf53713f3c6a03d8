"""Specs taken column by column: a table of plain scalar inputs, encoded without a spec object.

A sweep handed over as a DataFrame, an Arrow table or a Parquet file is already columns. For
an input model that is plain (``definition.plain``: ``float``, ``int``, ``bool`` and ``str``
fields, bounds such as ``Field(ge=0, lt=10)`` allowed) pydantic only checks each value's type
and bounds, and Arrow can check those for a whole column at once. Building one pydantic
object per row only to take it apart again into columns and JSON cost about 16 us a spec;
this costs about 2.

The result is an encoded chunk as ``specs.encode_chunk`` makes, but without the JSON: every
field of a plain model is an index column of specs.pq, so each spec's JSON can be written from
its row whenever it is wanted (``spec_json``), and a leaf batch's process builds its specs
straight from the columns (``spec_objects``). Writing 10^5 specs' JSON at allocate,
compressing it, reading it back and parsing it in the workers cost about a fifth of a tiny
sweep's run. Anything this path does not take exactly as pydantic would (a null, an infinite
float, an integer too large for a float column, a value out of bounds, a missing or extra
column) makes it decline, and the chunk goes the row-by-row way, which names each bad spec
and field.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.plain import plain_inputs, trusted_specs
from scythe_oo.definition.schema import INDEX_PREFIX, ExperimentSchema, FieldKind
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.runfolder.specs import SPEC_COLUMN, TAIL_COLUMN, json_heads

_ARROW_TYPES: Mapping[type, pa.DataType] = {
    float: pa.float64(),
    int: pa.int64(),
    bool: pa.bool_(),
    str: pa.string(),
}

_COMPARE = {
    "ge": pc.greater_equal,
    "gt": pc.greater,
    "le": pc.less_equal,
    "lt": pc.less,
}
"""The Arrow comparison each bound of a plain field requires."""


@attrs.frozen
class ColumnField:
    """One field a column can fill as it is: its name, Arrow type, JSON key (with the comma
    before it, ready to be joined) and bounds."""

    name: str
    arrow_type: pa.DataType
    key: str
    bounds: tuple[tuple[str, int | float], ...]

    def within(self, column: pa.Array) -> bool:
        """Whether every value of ``column`` is within this field's bounds."""
        return all(
            pc.all(_COMPARE[bound](column, operand)).as_py() for bound, operand in self.bounds
        )


@functools.cache
def column_fields(input_type: type[ExperimentInputSpec]) -> tuple[ColumnField, ...] | None:
    """The fields of ``input_type`` a table's columns fill, when it is plain (see
    ``definition.plain.plain_inputs``), else None."""
    fields = plain_inputs(input_type)
    if fields is None:
        return None
    return tuple(
        ColumnField(f.name, _ARROW_TYPES[f.kind], "," + json.dumps(f.name) + ":", f.bounds)
        for f in fields
    )


def takes_columns(schema: ExperimentSchema, columns: pa.Schema) -> bool:
    """Whether a table with ``columns`` can be encoded column by column: the input model is
    plain, the table has exactly its fields, and each column's type is one pydantic would
    take for that field as it is."""
    fields = column_fields(schema.input_type)
    if fields is None or sorted(columns.names) != sorted(f.name for f in fields):
        return False
    if any(p.kind is not FieldKind.SCALAR for p in schema.inputs):
        return False
    return all(_compatible(columns.field(f.name).type, f.arrow_type) for f in fields)


def _compatible(given: pa.DataType, wanted: pa.DataType) -> bool:
    if wanted == pa.float64():
        return bool(pa.types.is_floating(given) or pa.types.is_integer(given))
    if wanted == pa.int64():
        return bool(pa.types.is_integer(given))
    if wanted == pa.string():
        return bool(pa.types.is_string(given) or pa.types.is_large_string(given))
    return bool(given == wanted)


def encode_columns(schema: ExperimentSchema, table: pa.Table) -> pa.Table | None:
    """``table`` (whose columns ``takes_columns`` accepted) as an encoded chunk of specs, or
    None where a value needs the row-by-row path: a null, an infinite or NaN float (pydantic
    takes them, and the row path writes them as JSON constants), an integer a float column
    cannot hold exactly, or a value out of its field's bounds (the row path names it)."""
    fields = column_fields(schema.input_type)
    assert fields is not None, "takes_columns() first"
    typed: dict[str, pa.Array] = {}
    for field in fields:
        column = table.column(field.name).combine_chunks()
        if column.null_count:
            return None
        try:
            column = column.cast(field.arrow_type)  # safe: anything lossy raises
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        if field.arrow_type == pa.float64() and not pc.all(pc.is_finite(column)).as_py():
            return None
        if field.bounds and not field.within(column):
            return None
        typed[field.name] = column
    columns: dict[str, pa.Array] = {p.name: typed[p.name] for p in schema.indexed_inputs}
    # No JSON: the columns are the spec (a null __spec__ says so; see spec_json).
    columns[TAIL_COLUMN] = pa.nulls(table.num_rows, pa.string())
    return pa.table(columns)


def spec_json(input_type: type[ExperimentInputSpec], table: pa.Table) -> list[str]:
    """Each spec of a specs table (specs.pq, a node's share of it, or rows of either) as the
    JSON a leaf validates: its ``__spec__``, or, where that is null (a spec allocate took as
    columns), the same JSON written from the row's columns."""
    texts = table.column(SPEC_COLUMN).combine_chunks()
    if texts.null_count:
        texts = pc.if_else(pc.is_null(texts), _rebuilt(input_type, table), texts)
    return [str(text) for text in texts.to_pylist()]


def spec_objects(schema: ExperimentSchema, table: pa.Table) -> Iterable[Any]:
    """The specs of a specs table as input objects: built from the columns, one at a time,
    where allocate took them as columns (the values were checked then, and a column holds
    each exactly), else validated from their JSON in one call."""
    rows = table.num_rows
    if rows and table.column(SPEC_COLUMN).null_count == rows:
        fields = column_fields(schema.input_type) or ()
        names = (*INDEX_PREFIX, *(f.name for f in fields))
        if fields and all(name in table.column_names for name in names):
            built = trusted_specs(
                schema.input_type, {name: table.column(name).to_pylist() for name in names}
            )
            if built is not None:
                return built
    return schema.spec_list.validate_json(f"[{','.join(spec_json(schema.input_type, table))}]")


def _rebuilt(input_type: type[ExperimentInputSpec], table: pa.Table) -> pa.Array:
    """Every row's JSON, written from its columns, exactly as allocate would have written it."""
    fields = column_fields(input_type)
    missing = (
        []
        if fields is None
        else [
            name
            for name in (*INDEX_PREFIX, *(f.name for f in fields))
            if name not in table.column_names
        ]
    )
    if fields is None or missing:
        raise ValueError(
            f"this specs table has specs without JSON, which only a plain "
            f"{input_type.__name__} with every field a column can have (missing: {missing}); "
            "was it written by another version of the experiment?"
        )
    typed = {f.name: table.column(f.name).combine_chunks() for f in fields}
    heads = json_heads({name: table.column(name) for name in INDEX_PREFIX})
    return pc.binary_join_element_wise(heads, _tails(fields, typed, table.num_rows), "")


def _tails(fields: tuple[ColumnField, ...], typed: dict[str, pa.Array], rows: int) -> pa.Array:
    """Each row's JSON after its opening brace (``,"x":1.5,"y":2}``), built column-wise."""
    parts: list[pa.Array | str] = []
    for field in fields:
        parts.append(field.key)
        parts.append(_json_values(typed[field.name]))
    parts.append("}")
    if rows == 0:
        return pa.array([], pa.string())
    return pc.binary_join_element_wise(*parts, "")


def _json_values(column: pa.Array) -> pa.Array:
    """Each value as JSON text: Arrow writes the shortest text that reads back as the same
    float (or int, or bool); strings are escaped by the json module."""
    if pa.types.is_string(column.type):
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        return pa.array([dumps(v) for v in column.to_pylist()], pa.string())
    text = column.cast(pa.string())
    if pa.types.is_floating(column.type):
        # JSON reads "-0" as the integer zero, which loses the sign: write it as a float.
        text = pc.if_else(pc.equal(text, "-0"), "-0.0", text)
    return text
