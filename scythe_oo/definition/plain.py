"""Plain models: fields of ``float``, ``int``, ``bool`` and ``str`` that pydantic only type-checks.

For such a field, lax validation of a value of the field's own type (within its bounds, if
it has any) returns that value unchanged. So where a model holds nothing else, and adds
nothing around its fields (validators, serializers, a post-init, computed fields, settings
that rewrite strings), checking each value's type and bounds is the whole of validating it,
and the framework can do that cheaply: a column at a time for a table of specs
(``runfolder.spec_columns``), one ``type() is`` per field for a leaf's output
(``leaf.execute``).
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
from pydantic import BaseModel

PLAIN_TYPES = (float, int, bool, str)

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

BOUND_NAMES = ("ge", "gt", "le", "lt")
"""The numeric bounds a plain field may have (pydantic's ``annotated_types`` Ge, Gt, Le, Lt)."""


@attrs.frozen
class PlainField:
    """One plain field: its name, Python type and bounds (each a name of BOUND_NAMES and its
    operand)."""

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
            kind not in PLAIN_TYPES
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


def _bounds(kind: Any, metadata: list[Any]) -> tuple[tuple[str, int | float], ...] | None:
    """The bounds of ``metadata``, or None when it holds anything else (or bounds a field
    that is not a number, or by a value that is not one)."""
    found = []
    for item in metadata:
        name = type(item).__name__.lower()
        if (
            name not in BOUND_NAMES
            or type(item).__module__ != "annotated_types"
            or kind not in (int, float)
        ):
            return None
        operand = getattr(item, name)
        if type(operand) not in (int, float):
            return None
        found.append((name, operand))
    return tuple(found)
