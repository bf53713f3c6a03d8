"""Plain models: fields of ``float``, ``int``, ``bool`` and ``str`` that pydantic only type-checks.

For such a field, lax validation of a value of the field's own type (within its bounds, if
it has any) returns that value unchanged. So where a model holds nothing else, and adds
nothing around its fields (validators, serializers, a post-init, computed fields, settings
that rewrite strings), checking each value's type and bounds is the whole of validating it,
and the framework can do that cheaply: a column at a time for a table of specs
(``runfolder.spec_columns``), and one ``type() is`` per value for a spec or a leaf's output
that validating again would not change (``exactness``, used by ``driver.validate`` and
``leaf.execute``). The same holds the other way: values that were checked once and kept
exactly (a specs file's columns) make the spec again without a second check
(``trusted_specs``).
"""

from __future__ import annotations

import functools
import inspect
import operator
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import attrs
from pydantic import BaseModel

from scythe_oo.definition.spec import ExperimentInputSpec

_PLAIN_TYPES = (float, int, bool, str)

_HARMLESS_CONFIG = frozenset(
    {
        "extra",
        "ser_json_inf_nan",
        "title",
        "json_schema_extra",
        "frozen",
        "validate_assignment",
        "arbitrary_types_allowed",
        "revalidate_instances",
        "protected_namespaces",
        "use_attribute_docstrings",
        "populate_by_name",
        "defer_build",
    }
)
"""Model settings that change nothing about how a plain field's value is validated."""

_HOLDS: Mapping[str, Callable[[Any, Any], bool]] = {
    "ge": operator.ge,
    "gt": operator.gt,
    "le": operator.le,
    "lt": operator.lt,
}
"""The numeric bounds a plain field may have (pydantic's ``annotated_types`` Ge, Gt, Le, Lt),
each with the test a value must pass."""


@attrs.frozen
class PlainField:
    """One plain field: its name, Python type and bounds (each "ge", "gt", "le" or "lt", and
    its operand)."""

    name: str
    kind: type
    bounds: tuple[tuple[str, int | float], ...] = ()


@functools.cache
def plain_fields(
    model: type[BaseModel], skip: frozenset[str] = frozenset()
) -> tuple[PlainField, ...] | None:
    """The fields of ``model`` but ``skip``, in declaration order, when every one is plain;
    None when one is not, or when the model adds anything around its fields."""
    decorators = model.__pydantic_decorators__
    if (
        decorators.validators
        or decorators.field_validators
        or decorators.root_validators
        or decorators.model_validators
        or decorators.field_serializers
        or decorators.model_serializers
        or decorators.computed_fields
        or model.__pydantic_post_init__ is not None
        or not set(model.model_config) <= _HARMLESS_CONFIG
    ):
        return None
    found: list[PlainField] = []
    for name, info in model.model_fields.items():
        if name in skip:
            continue
        kind = info.annotation
        bounds = _bounds(kind, info.metadata)
        if (
            kind not in _PLAIN_TYPES
            or bounds is None
            or info.alias is not None
            or info.validation_alias is not None
            or info.serialization_alias is not None
            or info.exclude
            or info.discriminator is not None
        ):
            return None
        assert isinstance(kind, type)
        found.append(PlainField(name, kind, bounds))
    return tuple(found)


@functools.cache
def plain_inputs(input_type: type[ExperimentInputSpec]) -> tuple[PlainField, ...] | None:
    """The declared fields of a plain input model that keeps the default
    ``computed_features`` (which has none), or None; the bookkeeping fields allocate fills
    in are left out."""
    if inspect.getattr_static(input_type, "computed_features") is not inspect.getattr_static(
        ExperimentInputSpec, "computed_features"
    ):
        return None
    fields = plain_fields(input_type, frozenset(ExperimentInputSpec.BOOKKEEPING_FIELDS))
    return fields or None


def _bounds(kind: Any, metadata: list[Any]) -> tuple[tuple[str, int | float], ...] | None:
    """The bounds of ``metadata``, or None when it holds anything else (or bounds a field
    that is not a number, or by a value that is not one)."""
    found = []
    for item in metadata:
        name = type(item).__name__.lower()
        if (
            name not in _HOLDS
            or type(item).__module__ != "annotated_types"
            or kind not in (int, float)
        ):
            return None
        operand = getattr(item, name)
        if type(operand) not in (int, float):
            return None
        found.append((name, operand))
    return tuple(found)


def exactness(fields: tuple[PlainField, ...]) -> Callable[[Mapping[str, Any]], bool]:
    """A test of whether each field's value in a mapping (a model's ``__dict__``) has exactly
    the field's type and is within its bounds: then validating it would return it
    unchanged. It fails for anything else (a subclass of ``str``, an ``int`` in a ``float``
    field, a value set after construction that breaks a bound), which must be validated.
    Built once per batch and run per spec or output, so its common case is a few calls into
    C: one lookup of every value, one comparison of their types."""
    kinds = tuple(field.kind for field in fields)
    fetch = values_of(tuple(field.name for field in fields))
    bounded = tuple(
        (at, _HOLDS[bound], operand)
        for at, field in enumerate(fields)
        for bound, operand in field.bounds
    )

    def holds(values: Mapping[str, Any]) -> bool:
        try:
            found = fetch(values)
        except KeyError:
            return False
        if tuple(map(type, found)) != kinds:
            return False
        return all(test(found[at], operand) for at, test, operand in bounded)

    def typed(values: Mapping[str, Any]) -> bool:
        try:
            return tuple(map(type, fetch(values))) == kinds
        except KeyError:
            return False

    return holds if bounded else typed


def values_of(names: Sequence[str]) -> Callable[[Mapping[str, Any]], tuple[Any, ...]]:
    """A getter of ``names``' values from a mapping (a model's ``__dict__``), as a tuple: one
    ``itemgetter`` call in C where there are several names, the same tuple for one or none."""
    if len(names) > 1:
        return operator.itemgetter(*names)
    return lambda values: tuple(values[name] for name in names)


def trusted_specs(
    input_type: type[ExperimentInputSpec], columns: Mapping[str, Sequence[Any]]
) -> Iterator[Any] | None:
    """Specs of a plain ``input_type`` made from ``columns`` (field name to each spec's
    value) without validating them again, one at a time; None where that would not make
    exactly what validation makes.

    The values must be ones validation accepted and kept as they were (specs.pq's columns
    hold each plain value exactly). A spec is then what pydantic's own ``model_construct``
    makes, at a fraction of its cost, which matters where a worker makes 10^5 specs for
    leaves that take microseconds; made one at a time, a batch's specs never all sit in
    memory for the collector to scan. The first spec a process makes of a model is compared
    with what validation makes of the same values; a mismatch (another pydantic, a model
    that adds anything around its fields) turns this off for the model.
    """
    names = _trusted_fields(input_type)
    rows = len(next(iter(columns.values()), ()))
    if (
        names is None
        or _AGREES.get(input_type) is False
        or not rows
        or any(name not in names for name in columns)
    ):
        return None
    model_fields = input_type.model_fields
    sources = [
        columns[name] if name in columns else [model_fields[name].default] * rows for name in names
    ]
    given = frozenset(columns)
    new = object.__new__
    # The setters of the slots pydantic keeps a model's state in: what model_construct
    # assigns, without its per-field Python loop.
    slots = BaseModel.__dict__
    put_dict = slots["__dict__"].__set__
    put_set = slots["__pydantic_fields_set__"].__set__
    put_extra = slots["__pydantic_extra__"].__set__
    put_private = slots["__pydantic_private__"].__set__

    def build(row: tuple[Any, ...]) -> Any:
        spec = new(input_type)
        put_dict(spec, dict(zip(names, row, strict=True)))
        put_set(spec, set(given))
        put_extra(spec, None)
        put_private(spec, None)
        return spec

    if input_type not in _AGREES:
        first = build(next(zip(*sources, strict=True)))
        values = {name: column[0] for name, column in columns.items()}
        if not _AGREES.setdefault(input_type, _same(first, input_type.model_validate(values))):
            return None
    return map(build, zip(*sources, strict=True))


_AGREES: dict[type, bool] = {}
"""Whether a built spec matched the validated one, per model (see ``trusted_specs``)."""


def _same(built: Any, checked: Any) -> bool:
    """Whether two models hold the same values, of the same types, in the same order, with
    the same bookkeeping."""
    return (
        [(k, type(v), v) for k, v in built.__dict__.items()]
        == [(k, type(v), v) for k, v in checked.__dict__.items()]
        and built.__pydantic_fields_set__ == checked.__pydantic_fields_set__
        and built.__pydantic_extra__ == checked.__pydantic_extra__
        and built.__pydantic_private__ == checked.__pydantic_private__
    )


@functools.cache
def _trusted_fields(input_type: type[ExperimentInputSpec]) -> tuple[str, ...] | None:
    """Every field of a plain ``input_type``, in order, when its specs can be trusted from
    their values (no extra fields kept, no private attributes, plain defaults); else None."""
    if (
        plain_inputs(input_type) is None
        or input_type.__private_attributes__
        or input_type.model_config.get("extra") == "allow"
        or any(info.default_factory is not None for info in input_type.model_fields.values())
    ):
        return None
    return tuple(input_type.model_fields)
