"""The design space an input schema declares: the values each field may take.

A researcher already wrote the design space down when they gave every field bounds, a
``Literal`` or an ``Enum``; sampling should not make them write it again. This module reads it
off the schema, lets the call narrow it (``ranges``), pin fields (``fixed``) or list values
(``choices``), and maps points of the unit hypercube onto it. A field it cannot place is an
error that names every such field at once, with the fix.
"""

from __future__ import annotations

import difflib
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

import annotated_types
import attrs
import numpy as np
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from scythe_oo.definition.annotations import (
    FILE_REFERENCE_MARKER,
    NOT_INDEXED_MARKER,
    field_annotation,
    has_marker,
    split_optional,
    strip_annotated,
)
from scythe_oo.definition.errors import DesignError

SCALE_KEY = "scale"
"""``Field(ge=1e-3, le=10, json_schema_extra={"scale": "log"})`` samples a field on a log scale."""


class DimensionKind(enum.Enum):
    """How a sampled field maps the unit interval onto its values."""

    REAL = "real"
    INTEGER = "integer"
    CATEGORY = "category"


@attrs.frozen(kw_only=True)
class Dimension:
    """One sampled field: a real or integer interval (optionally log-scaled) or a list of values.

    ``low``/``high`` are the bounds as declared; ``low_open``/``high_open`` say that a bound is
    exclusive (``gt``/``lt``), which sampling respects by never returning the bound itself.
    Integer bounds are already inclusive.
    """

    name: str
    kind: DimensionKind
    low: float = 0.0
    high: float = 0.0
    low_open: bool = False
    high_open: bool = False
    log: bool = False
    values: tuple[Any, ...] = ()

    def from_unit(self, u: np.ndarray) -> list[Any]:
        """The values at points ``u`` of [0, 1): equal shares of the unit interval per value."""
        if self.kind is DimensionKind.CATEGORY:
            index = np.minimum((u * len(self.values)).astype(np.int64), len(self.values) - 1)
            return [self.values[i] for i in index.tolist()]
        if self.kind is DimensionKind.INTEGER:
            top = self.high + 1  # every integer gets a cell of the same width (log: same ratio)
            if self.log:
                raw = np.exp(math.log(self.low) + u * (math.log(top) - math.log(self.low)))
            else:
                raw = self.low + u * (top - self.low)
            ints = np.clip(np.floor(raw), self.low, self.high).astype(np.int64)
            return [int(i) for i in ints.tolist()]
        if self.log:
            x = np.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            x = self.low + u * (self.high - self.low)
        return [float(v) for v in self._inside(x).tolist()]

    def levels(self, count: int) -> list[Any]:
        """``count`` evenly spaced values (geometric on a log scale) for a full factorial; every
        value for a category, and every integer when there are fewer than ``count``."""
        if self.kind is DimensionKind.CATEGORY:
            return list(self.values)
        # An exclusive bound is not a level: the levels are then spaced as if it were one
        # step further out, so they stay evenly spaced inside the open interval.
        first, last = int(self.low_open), int(self.high_open)
        steps = count + first + last
        if count == 1:
            mid = math.sqrt(self.low * self.high) if self.log else (self.low + self.high) / 2
            points = np.array([mid])
        elif self.log:
            points = np.geomspace(self.low, self.high, steps)[first : steps - last]
        else:
            points = np.linspace(self.low, self.high, steps)[first : steps - last]
        if self.kind is DimensionKind.INTEGER:
            return [int(v) for v in np.unique(np.round(points)).tolist()]
        return [float(v) for v in self._inside(points).tolist()]

    def _inside(self, x: np.ndarray) -> np.ndarray:
        """``x`` clipped into the bounds, nudged off a bound that is exclusive."""
        x = np.clip(x, self.low, self.high)
        if self.low_open:
            x = np.where(x <= self.low, np.nextafter(self.low, math.inf), x)
        if self.high_open:
            x = np.where(x >= self.high, np.nextafter(self.high, -math.inf), x)
        return x

    def describe(self) -> dict[str, Any]:
        """A plain-data summary for the design record and the report."""
        if self.kind is DimensionKind.CATEGORY:
            return {"kind": "category", "values": list(self.values)}
        low = ("(" if self.low_open else "[") + f"{self.low:g}"
        high = f"{self.high:g}" + (")" if self.high_open else "]")
        return {"kind": self.kind.value, "range": f"{low}, {high}", "log": self.log}


@attrs.frozen(kw_only=True)
class DesignSpace:
    """The sampled dimensions of an input model, in declaration order, and the held fields.

    ``fixed`` holds the values the caller pinned; ``defaults`` names the fields that cannot be
    sampled and keep their declared default.
    """

    model: type[BaseModel]
    dimensions: tuple[Dimension, ...]
    fixed: dict[str, Any]
    defaults: tuple[str, ...]


def design_space(
    model: type[BaseModel],
    *,
    fixed: Mapping[str, Any],
    choices: Mapping[str, Sequence[Any]],
    ranges: Mapping[str, tuple[float, float]],
) -> DesignSpace:
    """Read ``model``'s design space; one DesignError names every field it cannot place."""
    bookkeeping = set(getattr(model, "BOOKKEEPING_FIELDS", ()))
    fields = {n: f for n, f in model.model_fields.items() if n not in bookkeeping}
    _check_names(model, fields, fixed=fixed, choices=choices, ranges=ranges)
    dimensions: list[Dimension] = []
    defaults: list[str] = []
    unplaced: list[str] = []
    for name, info in fields.items():
        if name in fixed:
            continue
        if name in choices:
            dimensions.append(_choice(model, name, choices[name]))
            continue
        dimension = _declared(model, name, info, ranges.get(name))
        if dimension is not None:
            dimensions.append(dimension)
        elif not info.is_required():
            defaults.append(name)
        else:
            unplaced.append(f"{name} ({_why_unplaced(info)})")
    if unplaced:
        raise DesignError(
            f"{model.__name__}: cannot sample {len(unplaced)} field(s), because they have no "
            f"bounds, no choices and no fixed value: {'; '.join(unplaced)}. Give each numeric "
            "field bounds (Field(ge=..., le=...)) or ranges={name: (low, high)}, list the values "
            "to draw from with choices={name: [...]}, or hold it with fixed={name: value}."
        )
    return DesignSpace(
        model=model, dimensions=tuple(dimensions), fixed=dict(fixed), defaults=tuple(defaults)
    )


def _check_names(
    model: type[BaseModel], fields: Mapping[str, FieldInfo], **given: Mapping[str, Any]
) -> None:
    problems = []
    for argument, mapping in given.items():
        for name in mapping:
            if name not in fields:
                close = difflib.get_close_matches(name, fields, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{argument}[{name!r}] is not an input field{hint}")
    both = sorted(set(given["fixed"]) & set(given["choices"]))
    problems += [f"{name!r} is both fixed and given choices; keep one" for name in both]
    if problems:
        raise DesignError(
            f"{model.__name__}.sample: {'; '.join(problems)}. Input fields: {', '.join(fields)}."
        )


def _choice(model: type[BaseModel], name: str, values: Sequence[Any]) -> Dimension:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise DesignError(
            f"{model.__name__}.sample: choices[{name!r}] must be a non-empty list of values, "
            f"got {values!r}."
        )
    return Dimension(name=name, kind=DimensionKind.CATEGORY, values=tuple(values))


def _declared(
    model: type[BaseModel], name: str, info: FieldInfo, narrowed: tuple[float, float] | None
) -> Dimension | None:
    """The dimension the field's own annotation declares, or None when it declares none."""
    annotation = field_annotation(info)
    outer, metadata = strip_annotated(annotation)
    base, inner = strip_annotated(split_optional(outer)[0])
    metadata += inner
    number = base is int or base is float or _is_number_union(base)
    if number and not has_marker(annotation, NOT_INDEXED_MARKER):
        return _numeric(model, name, info, base is int, metadata, narrowed)
    _refuse_range(model, name, narrowed)
    if has_marker(annotation, FILE_REFERENCE_MARKER) or has_marker(annotation, NOT_INDEXED_MARKER):
        return None
    values: tuple[Any, ...] = ()
    if get_origin(base) is Literal:
        values = tuple(v for v in get_args(base) if v is not None)
    elif isinstance(base, type) and issubclass(base, enum.Enum):
        values = tuple(base)
    elif base is bool:
        values = (False, True)
    return Dimension(name=name, kind=DimensionKind.CATEGORY, values=values) if values else None


def _is_number_union(tp: Any) -> bool:
    args = [a for a in get_args(tp) if a is not type(None)]
    return bool(args) and all(a in (int, float) for a in args)


def _refuse_range(model: type[BaseModel], name: str, narrowed: Any) -> None:
    if narrowed is not None:
        raise DesignError(
            f"{model.__name__}.sample: ranges[{name!r}] is for numeric fields; give this field "
            "choices= or fixed= instead."
        )


def _numeric(
    model: type[BaseModel],
    name: str,
    info: FieldInfo,
    integer: bool,
    constraints: Sequence[Any],
    narrowed: tuple[float, float] | None,
) -> Dimension | None:
    low, low_open, high, high_open = _bounds(constraints)
    if narrowed is not None:
        low, low_open, high, high_open = _narrow(
            model, name, (low, low_open, high, high_open), narrowed
        )
    if low is None or high is None:
        return None
    log = _log_scale(model, name, info)
    where = f"{model.__name__}.{name}"
    if integer:
        low = math.floor(low) + 1 if low_open else math.ceil(low)
        high = math.ceil(high) - 1 if high_open else math.floor(high)
        low_open = high_open = False
    if low > high or (not integer and low == high):
        raise DesignError(f"{where}: the bounds leave nothing to sample ({low} to {high}).")
    if log and (low <= 0 or (integer and low < 1)):
        raise DesignError(
            f"{where}: a log scale needs a lower bound above 0 (integers: at least 1), got "
            f"{low}; raise the bound, or give ranges={{{name!r}: (low, high)}}."
        )
    kind = DimensionKind.INTEGER if integer else DimensionKind.REAL
    return Dimension(
        name=name,
        kind=kind,
        low=float(low),
        high=float(high),
        low_open=low_open,
        high_open=high_open,
        log=log,
    )


Bounds = tuple[float | None, bool, float | None, bool]


def _bounds(constraints: Sequence[Any]) -> Bounds:
    """(low, low is exclusive, high, high is exclusive) from annotated-types constraints."""
    low: float | None = None
    high: float | None = None
    low_open = high_open = False
    for item in constraints:
        parts = [item]
        if isinstance(item, annotated_types.Interval):
            parts = [
                annotated_types.Gt(item.gt) if item.gt is not None else None,
                annotated_types.Ge(item.ge) if item.ge is not None else None,
                annotated_types.Lt(item.lt) if item.lt is not None else None,
                annotated_types.Le(item.le) if item.le is not None else None,
            ]
        for part in parts:
            if isinstance(part, annotated_types.Ge):
                low, low_open = float(part.ge), False  # type: ignore[arg-type]
            elif isinstance(part, annotated_types.Gt):
                low, low_open = float(part.gt), True  # type: ignore[arg-type]
            elif isinstance(part, annotated_types.Le):
                high, high_open = float(part.le), False  # type: ignore[arg-type]
            elif isinstance(part, annotated_types.Lt):
                high, high_open = float(part.lt), True  # type: ignore[arg-type]
    return low, low_open, high, high_open


def _narrow(
    model: type[BaseModel], name: str, declared: Bounds, narrowed: tuple[float, float]
) -> Bounds:
    """The declared bounds narrowed to ``ranges[name]``, which must lie within them."""
    try:
        low, high = (float(v) for v in narrowed)
    except (TypeError, ValueError):
        raise DesignError(
            f"{model.__name__}.sample: ranges[{name!r}] must be a (low, high) pair of numbers, "
            f"got {narrowed!r}."
        ) from None
    d_low, d_low_open, d_high, d_high_open = declared
    outside = (
        low >= high
        or (d_low is not None and (low < d_low or (low == d_low and d_low_open)))
        or (d_high is not None and (high > d_high or (high == d_high and d_high_open)))
    )
    if outside:
        raise DesignError(
            f"{model.__name__}.sample: ranges[{name!r}] = ({low:g}, {high:g}) must have low < "
            f"high and lie within the field's bounds ({_fmt(d_low)}, {_fmt(d_high)})."
        )
    return low, low == d_low and d_low_open, high, high == d_high and d_high_open


def _fmt(bound: float | None) -> str:
    return "unbounded" if bound is None else f"{bound:g}"


def _log_scale(model: type[BaseModel], name: str, info: FieldInfo) -> bool:
    extra = info.json_schema_extra
    scale = extra.get(SCALE_KEY, "linear") if isinstance(extra, dict) else "linear"
    if scale not in ("linear", "log"):
        raise DesignError(
            f"{model.__name__}.{name}: json_schema_extra {{'{SCALE_KEY}': {scale!r}}} is not "
            "understood; use 'log' or 'linear'."
        )
    return scale == "log"


def _why_unplaced(info: FieldInfo) -> str:
    annotation = field_annotation(info)
    if has_marker(annotation, FILE_REFERENCE_MARKER):
        return "a file reference: list the files in choices"
    if has_marker(annotation, NOT_INDEXED_MARKER):
        return "not indexed: give choices or a fixed value"
    base, _ = split_optional(annotation)
    base, _ = strip_annotated(base)
    if base is int or base is float or _is_number_union(base):
        return "a number without both a lower and an upper bound"
    return f"type {getattr(base, '__name__', base)} has no values to draw from"
