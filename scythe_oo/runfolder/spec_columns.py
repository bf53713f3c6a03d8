"""Specs taken column by column: a table of plain scalar inputs, encoded without a spec object.

A sweep handed over as a DataFrame, an Arrow table or a Parquet file is already columns. For
an input model that is plain (``definition.plain``: ``float``, ``int``, ``bool`` and ``str``
fields, bounds such as ``Field(ge=0, lt=10)`` allowed) pydantic only checks each value's type
and bounds, and Arrow can check those for a whole column at once. Building one pydantic
object per row only to take it apart again into columns and JSON cost about 16 us a spec;
this costs about 2.

The result is the very encoded chunk ``specs.encode_chunk`` makes (index columns and JSON
tails), so everything downstream is unchanged. Anything this path does not take exactly as
pydantic would (a null, an infinite float, an integer too large for a float column, a value
out of bounds, a missing or extra column) makes it decline, and the chunk goes the row-by-row
way, which names each bad spec and field.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.plain import plain_inputs
from scythe_oo.definition.schema import ExperimentSchema, FieldKind
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.runfolder.specs import TAIL_COLUMN

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
    columns[TAIL_COLUMN] = _tails(fields, typed, table.num_rows)
    return pa.table(columns)


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
