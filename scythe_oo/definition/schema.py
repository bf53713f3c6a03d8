"""What the framework learns from a user's input and output models, once, at class creation.

The results tables are column-wise Arrow, so every field is classified up front: which fields
are index levels, which are scalar result columns, which are files to move, and the Arrow type
of each column. Doing this once turns a bad schema into an error at the ``class`` statement
instead of a surprise after a million leaves.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
import json
import types
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import attrs
import pyarrow as pa
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import models_json_schema

from scythe_oo.definition.annotations import (
    FILE_REFERENCE_MARKER,
    NOT_INDEXED_MARKER,
    field_annotation,
    has_marker,
    split_optional,
    strip_annotated,
)
from scythe_oo.definition.errors import ExperimentDefinitionError
from scythe_oo.definition.spec import ExperimentInputSpec, ExperimentOutputSpec

INDEX_PREFIX = ("experiment_id", "sort_index", "root_workflow_run_id")
"""The first index levels of every results table, in order."""

FAILURE_COLUMN_NAMES = (
    "error_type",
    "error_message",
    "traceback",
    "attempts",
    "worker",
    "wall_time",
    "log_tail",
)
"""Columns failures.pq adds after the spec index of each failed leaf."""

LEAF_STATS_COLUMN_NAMES = ("ok", "wall_time", "peak_rss_mib", "attempts", "worker", "finished_at")
"""Columns leaf_stats.pq adds after the spec index of each leaf."""

RESERVED_TABLE_NAMES = frozenset(
    {"scalars", "result_file_refs", "failures", "specs", "leaf_stats", "output"}
)
"""Names a user dataframe may not take, because final/ already uses them."""


class FieldKind(enum.Enum):
    """How the framework treats one declared field."""

    SCALAR = "scalar"
    FILE = "file"
    FILE_LIST = "file_list"
    NOT_INDEXED = "not_indexed"


@attrs.frozen
class FieldPlan:
    """One declared field: its name, how it is treated and its Arrow column type."""

    name: str
    kind: FieldKind
    arrow_type: pa.DataType
    optional: bool


_SCALAR_ARROW: list[tuple[type, pa.DataType]] = [
    (bool, pa.bool_()),
    (int, pa.int64()),
    (float, pa.float64()),
    (str, pa.string()),
    (dt.datetime, pa.timestamp("us")),
    (dt.date, pa.date32()),
]


def scalar_arrow_type(tp: Any) -> pa.DataType | None:
    """The Arrow type of a scalar annotation, or None when the annotation is not a scalar."""
    base, _ = strip_annotated(tp)
    if get_origin(base) is Literal:
        kinds = {type(v) for v in get_args(base)}
        types_ = [scalar_arrow_type(k) for k in kinds]
        if len(set(types_)) == 1 and types_[0] is not None:
            return types_[0]
        return pa.string() if kinds <= {str, int, float, bool} else None
    if get_origin(base) in (Union, types.UnionType):
        members = [a for a in get_args(base) if a is not type(None)]
        found = {scalar_arrow_type(m) for m in members}
        if len(found) == 1:
            return found.pop()
        if found <= {pa.int64(), pa.float64()}:
            return pa.float64()
        return None
    if isinstance(base, type):
        if issubclass(base, enum.Enum):
            values = {type(m.value) for m in base}
            return pa.string() if values == {str} else (pa.int64() if values == {int} else None)
        for py, arrow in _SCALAR_ARROW:
            if issubclass(base, py):
                return arrow
    return None


def plan_field(owner: type[BaseModel], name: str, annotation: Any) -> FieldPlan:
    """Classify one field of ``owner``; raise ExperimentDefinitionError when it cannot be stored."""
    inner, optional = split_optional(annotation)
    if has_marker(annotation, NOT_INDEXED_MARKER):
        return FieldPlan(name, FieldKind.NOT_INDEXED, pa.string(), optional)
    if has_marker(annotation, FILE_REFERENCE_MARKER):
        origin = get_origin(strip_annotated(inner)[0])
        if origin in (list, tuple, Sequence, set, frozenset):
            return FieldPlan(name, FieldKind.FILE_LIST, pa.string(), optional)
        return FieldPlan(name, FieldKind.FILE, pa.string(), optional)
    arrow = scalar_arrow_type(annotation)
    if arrow is not None:
        return FieldPlan(name, FieldKind.SCALAR, arrow, optional)
    raise ExperimentDefinitionError(
        f"{owner.__name__}.{name}: type {annotation!r} is not a scalar, so it cannot be a column "
        "of the results tables. Use a scalar type (int, float, bool, str, Literal, Enum, date), "
        "a FileReference, or — for inputs only — annotate it "
        f"`{name}: Annotated[..., NotIndexed]` to keep it in specs.pq but out of the index; for "
        "outputs, return tables in `dataframes` instead."
    )


@attrs.frozen
class ExperimentSchema:
    """Everything derived from an experiment's input and output models."""

    input_type: type[ExperimentInputSpec]
    output_type: type[ExperimentOutputSpec]
    inputs: tuple[FieldPlan, ...]
    outputs: tuple[FieldPlan, ...]

    @classmethod
    def build(
        cls, input_type: type[ExperimentInputSpec], output_type: type[ExperimentOutputSpec]
    ) -> ExperimentSchema:
        bookkeeping = set(ExperimentInputSpec.BOOKKEEPING_FIELDS)
        inputs = tuple(
            plan_field(input_type, name, field_annotation(info))
            for name, info in input_type.model_fields.items()
            if name not in bookkeeping
        )
        outputs = tuple(
            plan_field(output_type, name, field_annotation(info))
            for name, info in output_type.model_fields.items()
            if name != "dataframes"
        )
        for plan in outputs:
            if plan.kind is FieldKind.FILE_LIST or plan.kind is FieldKind.NOT_INDEXED:
                raise ExperimentDefinitionError(
                    f"{output_type.__name__}.{plan.name}: outputs support scalars and single "
                    "FileReference fields; return lists of files as several fields or as a table "
                    "in `dataframes`."
                )
        _check_names(input_type, output_type, inputs, outputs)
        return cls(input_type, output_type, inputs, outputs)

    # Read once per spec or per leaf on hot paths: derived once, not filtered on every access.
    @functools.cached_property
    def indexed_inputs(self) -> tuple[FieldPlan, ...]:
        return tuple(p for p in self.inputs if p.kind is not FieldKind.NOT_INDEXED)

    @functools.cached_property
    def file_inputs(self) -> tuple[FieldPlan, ...]:
        return tuple(p for p in self.inputs if p.kind in (FieldKind.FILE, FieldKind.FILE_LIST))

    @functools.cached_property
    def scalar_outputs(self) -> tuple[FieldPlan, ...]:
        return tuple(p for p in self.outputs if p.kind is FieldKind.SCALAR)

    @functools.cached_property
    def file_outputs(self) -> tuple[FieldPlan, ...]:
        return tuple(p for p in self.outputs if p.kind is FieldKind.FILE)

    @functools.cached_property
    def spec_list(self) -> TypeAdapter[list[Any]]:
        """Validates a whole batch of specs in one call rather than one call per spec."""
        return TypeAdapter(list[self.input_type])  # type: ignore[name-defined]

    def index_columns(self, computed: Iterable[str] = ()) -> list[str]:
        return [*INDEX_PREFIX, *(p.name for p in self.indexed_inputs), *computed]

    def io_spec(self) -> dict[str, Any]:
        """JSON Schema of input and output, with descriptions, for experiment_io_spec.yml."""
        _, schema = models_json_schema(
            [(self.input_type, "validation"), (self.output_type, "serialization")],
            ref_template="#/$defs/{model}",
        )
        return schema


def _check_names(
    input_type: type[ExperimentInputSpec],
    output_type: type[ExperimentOutputSpec],
    inputs: Sequence[FieldPlan],
    outputs: Sequence[FieldPlan],
) -> None:
    """Every column of every results table must have one meaning. Index levels (inputs and
    computed features) appear in every table, so they must differ from each other and from
    every column the framework adds; outputs must differ from the index levels. A clash is
    reported when the class is defined, naming both sides."""
    taken = {name: "an index level of every results table" for name in INDEX_PREFIX}
    for name in FAILURE_COLUMN_NAMES:
        taken[name] = "a column of failures.pq"
    for name in LEAF_STATS_COLUMN_NAMES:
        taken.setdefault(name, "a column of leaf_stats.pq")
    levels = {name: taken[name] for name in INDEX_PREFIX}
    for plan in inputs:
        side = f"{input_type.__name__}.{plan.name} (an input field)"
        _claim(taken, plan.name, side)
        if plan.kind is not FieldKind.NOT_INDEXED:
            levels[plan.name] = side
    for name in input_type.model_computed_fields:
        side = f"{input_type.__name__}.{name} (a computed feature)"
        _claim(taken, name, side)
        levels[name] = side
    for plan in outputs:
        _claim(levels, plan.name, f"{output_type.__name__}.{plan.name} (an output field)")


def _claim(taken: dict[str, str], name: str, side: str) -> None:
    if name in taken:
        raise ExperimentDefinitionError(
            f"{side} clashes with {taken[name]} of the same name {name!r}; rename "
            f"{side.split(' ')[0]} so that every column has one meaning."
        )
    taken[name] = side


def index_value(plan: FieldPlan, value: Any) -> Any:
    """The value a field takes as an index level or table cell: URIs as strings, enums unwrapped."""
    if value is None:
        return None
    if plan.kind is FieldKind.FILE:
        return file_uri(value)
    if plan.kind is FieldKind.FILE_LIST:
        return json.dumps([file_uri(v) for v in value])
    if plan.kind is FieldKind.NOT_INDEXED:
        return json.dumps(value, default=str)
    if isinstance(value, enum.Enum):
        value = value.value
    if plan.arrow_type == pa.string() and not isinstance(value, str):
        return str(value)  # a Literal[1, "auto"] field is text in the tables
    return value


def file_uri(value: Any) -> str:
    """A file reference as a string: URLs verbatim, local paths as absolute file:// URIs."""
    if isinstance(value, Path):
        return value.expanduser().resolve().as_uri()
    return str(value)


def scalar_columns(
    plans: Sequence[FieldPlan], rows: Sequence[Mapping[str, Any]]
) -> dict[str, pa.Array]:
    """Build typed Arrow columns for ``plans`` from row dictionaries."""
    return {p.name: typed_column(p, [row.get(p.name) for row in rows]) for p in plans}


def typed_column(plan: FieldPlan, values: list[Any]) -> pa.Array:
    """A typed Arrow column of ``index_value`` of each value.

    Plain scalars, the usual case, go to Arrow as they are: converting each of 10^5 cells
    only to find nothing to convert would cost more than building the column.
    """
    kinds = set(map(type, values))
    if (
        plan.kind is not FieldKind.SCALAR
        or any(issubclass(t, enum.Enum) for t in kinds)
        or (plan.arrow_type == pa.string() and not kinds <= {str, type(None)})
    ):
        values = [index_value(plan, v) for v in values]
    return pa.array(values, type=plan.arrow_type)


def row_values(plans: Sequence[FieldPlan], model: Any) -> dict[str, Any]:
    """``index_value`` of each planned field of ``model``, by name: one results row.

    Called once per leaf, so plain scalars (the common case) skip the general conversion.
    """
    row = {}
    for plan in plans:
        value = getattr(model, plan.name)
        if plan.kind is not FieldKind.SCALAR or isinstance(value, enum.Enum):
            value = index_value(plan, value)
        row[plan.name] = value
    return row
