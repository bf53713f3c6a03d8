"""Specs taken column by column: a table of plain scalar inputs, encoded without a spec object.

A sweep handed over as a DataFrame, an Arrow table or a Parquet file is already columns. For
an input model whose fields are plain ``float``, ``int``, ``bool`` and ``str`` (bounds such as
``Field(ge=0, lt=10)`` allowed; no other constraints, validators, aliases or computed
features) pydantic can only check each value's type and bounds, and Arrow can check those for
a whole column at once. Building one pydantic object per
row only to take it apart again into columns and JSON cost 16 us a spec, against well under
one here: at 10^5 tiny leaves that was a third of the run.

The result is the very encoded chunk ``specs.encode_chunk`` makes (index columns and JSON
tails), so everything downstream is unchanged. Anything this path does not take exactly as
pydantic would (a null, an infinite float, an integer too large for a float column, a value
out of bounds, a missing or extra column) makes it decline, and the chunk goes the row-by-row
way, which names each bad spec and field.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Mapping
from typing import Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.schema import ExperimentSchema, FieldKind
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.runfolder.specs import TAIL_COLUMN

_PLAIN_TYPES: Mapping[type, pa.DataType] = {
    float: pa.float64(),
    int: pa.int64(),
    bool: pa.bool_(),
    str: pa.string(),
}

_HARMLESS_CONFIG = frozenset(
    {
        "extra",
        "ser_json_inf_nan",
        "title",
        "json_schema_extra",
        "frozen",
        "validate_assignment",
        "arbitrary_types_allowed",
        "protected_namespaces",
        "use_attribute_docstrings",
        "populate_by_name",
        "defer_build",
    }
)
"""Model settings that change nothing about how a plain field's value is validated."""


_BOUNDS = {
    "Ge": ("ge", pc.greater_equal),
    "Gt": ("gt", pc.greater),
    "Le": ("le", pc.less_equal),
    "Lt": ("lt", pc.less),
}
"""The numeric bounds (pydantic's ``annotated_types`` metadata, by class name) a column is
checked against, with the comparison each one requires."""


@attrs.frozen
class PlainField:
    """One field a column can fill as it is: its name, Arrow type, JSON key (with the comma
    before it, ready to be joined) and numeric bounds (each a comparison and its operand)."""

    name: str
    arrow_type: pa.DataType
    key: str
    bounds: tuple[tuple[Any, Any], ...] = ()

    def within(self, column: pa.Array) -> bool:
        """Whether every value of ``column`` is within this field's bounds."""
        return all(pc.all(compare(column, operand)).as_py() for compare, operand in self.bounds)


def _bounds(annotation: Any, metadata: list[Any]) -> tuple[tuple[Any, Any], ...] | None:
    """The comparisons of ``metadata``, or None when it holds anything else (or bounds a
    field that is not a number, or by a value that is not one)."""
    found = []
    numeric = annotation in (int, float)
    for item in metadata:
        kind = _BOUNDS.get(type(item).__name__)
        if kind is None or type(item).__module__ != "annotated_types" or not numeric:
            return None
        attribute, compare = kind
        operand = getattr(item, attribute)
        if type(operand) not in (int, float):
            return None
        found.append((compare, operand))
    return tuple(found)


@functools.cache
def plain_fields(input_type: type[ExperimentInputSpec]) -> tuple[PlainField, ...] | None:
    """The fields of ``input_type`` in declaration order when every one is plain, else None.

    Plain means that pydantic's lax validation of a value of the field's own type returns
    that value unchanged, and that the model adds nothing around it (validators,
    serializers, a post-init, computed features, settings that rewrite strings)."""
    decorators = input_type.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
        or decorators.field_serializers
        or decorators.model_serializers
        or decorators.computed_fields
        or input_type.__pydantic_post_init__ is not None
        or inspect.getattr_static(input_type, "computed_features")
        is not inspect.getattr_static(ExperimentInputSpec, "computed_features")
        or not set(input_type.model_config) <= _HARMLESS_CONFIG
    ):
        return None
    found: list[PlainField] = []
    for name, info in input_type.model_fields.items():
        if name in ExperimentInputSpec.BOOKKEEPING_FIELDS:
            continue
        annotation = info.annotation
        bounds = _bounds(annotation, info.metadata)
        if (
            annotation not in _PLAIN_TYPES
            or bounds is None
            or info.alias is not None
            or info.validation_alias is not None
            or info.serialization_alias is not None
            or info.exclude
            or info.discriminator is not None
        ):
            return None
        assert isinstance(annotation, type)
        key = "," + json.dumps(name) + ":"
        found.append(PlainField(name, _PLAIN_TYPES[annotation], key, bounds))
    return tuple(found) if found else None


def takes_columns(schema: ExperimentSchema, columns: pa.Schema) -> bool:
    """Whether a table with ``columns`` can be encoded column by column: the input model is
    plain, the table has exactly its fields, and each column's type is one pydantic would
    take for that field as it is."""
    fields = plain_fields(schema.input_type)
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
    fields = plain_fields(schema.input_type)
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


def _tails(fields: tuple[PlainField, ...], typed: dict[str, pa.Array], rows: int) -> pa.Array:
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
