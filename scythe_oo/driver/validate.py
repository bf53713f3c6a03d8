"""Checking specs before anything is written: every spec, every field, one error for all.

A sweep of 10^5 specs with three bad ones should say so at once, naming each position and
field, not after the run folder is made or the first worker chokes. Validation runs a chunk at
a time with one pydantic call per chunk (the slow path, spec by spec, only when a chunk has a
problem), so the caller's list is never copied whole.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.plain import exactness, plain_inputs
from scythe_oo.definition.schema import (
    FAILURE_COLUMN_NAMES,
    INDEX_PREFIX,
    LEAF_STATS_COLUMN_NAMES,
)
from scythe_oo.definition.spec import ExperimentInputSpec

MAX_LISTED_ERRORS = 20
"""Problems listed in one SpecValidationError; the count of the rest follows."""


class Problems:
    """Every problem found in the specs: the first few in words, all of them counted."""

    def __init__(self, cls: AnyExperiment) -> None:
        self.cls = cls
        self.listed: list[str] = []
        self.count = 0

    def add(self, text: str) -> None:
        self.count += 1
        if len(self.listed) < MAX_LISTED_ERRORS:
            self.listed.append(text)

    def __bool__(self) -> bool:
        return self.count > 0

    def raise_any(self) -> None:
        if not self.count:
            return
        more = self.count - len(self.listed)
        raise SpecValidationError(
            f"{self.cls.name}.allocate: {self.count} problem(s) in the specs; nothing was "
            "written. Fix these and allocate again (spec #N is the spec at position N, or "
            "row N of a table or file, counting from 0):\n  "
            + "\n  ".join(self.listed)
            + (f"\n  ... and {more} more" if more else "")
        )


def fields_of(input_type: type[ExperimentInputSpec], item: Any) -> Any:
    """What to validate: a spec's current field values (copied, so validation cannot touch the
    caller's object), or the item itself when it is not a spec (a dict, say)."""
    return dict(item.__dict__) if isinstance(item, input_type) else item


def validate_chunk(
    cls: AnyExperiment, chunk: Sequence[Any], first: int, problems: Problems
) -> list[Any]:
    """Validated copies of the specs of ``chunk`` (which starts at position ``first``), or
    the caller's own specs where validating a copy would change nothing (specs of a plain
    model whose values still have exactly their fields' types and bounds), or an empty list
    after adding a problem for each invalid one. Either way they are only read."""
    input_type = cls.schema.input_type
    fields = plain_inputs(input_type)
    holds = None if fields is None else exactness(fields)
    if holds is not None and all(
        type(item) is input_type and holds(item.__dict__) for item in chunk
    ):
        # Each already holds exactly what validating a copy would make of it: read from here
        # on, never changed. Revalidating cost a quarter of allocate for 10^5 such specs.
        return list(chunk)
    if not any(_foreign_type(input_type, kind) for kind in set(map(type, chunk))):
        try:
            return list(
                cls.schema.spec_list.validate_python(
                    [fields_of(input_type, item) for item in chunk]
                )
            )
        except ValidationError:
            pass  # the slow path below tells exactly which spec failed, and why
    for position, item in enumerate(chunk, start=first):
        if _foreign(input_type, item):
            problems.add(
                f"spec #{position}: is a {type(item).__name__}, but {cls.name} takes "
                f"{input_type.__name__}; allocate it with the experiment it belongs to."
            )
            continue
        try:
            input_type.model_validate(fields_of(input_type, item))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(map(str, error["loc"])) or "<spec>"
                problems.add(
                    f"spec #{position}: field {where!r}: {error['msg']} "
                    f"(got {error.get('input')!r:.80})"
                )
    return []


def _foreign(input_type: type[ExperimentInputSpec], item: Any) -> bool:
    """A spec of another experiment."""
    return _foreign_type(input_type, type(item))


def _foreign_type(input_type: type[ExperimentInputSpec], kind: type) -> bool:
    return kind is not input_type and (
        issubclass(kind, ExperimentInputSpec) and not issubclass(kind, input_type)
    )


class Features:
    """Computed feature names: checked once, then required to be the same for every spec."""

    def __init__(self, cls: AnyExperiment) -> None:
        self.cls = cls
        self.names: list[str] | None = None
        input_type = cls.schema.input_type
        # The default computed_features of a model without computed fields is always empty:
        # no need to ask every spec.
        self.constant = (
            inspect.getattr_static(input_type, "computed_features")
            is inspect.getattr_static(ExperimentInputSpec, "computed_features")
            and not input_type.model_computed_fields
        )

    def check(self, specs: Sequence[Any], first: int, problems: Problems) -> list[str]:
        if self.constant:
            self.names = []
            return []
        for position, spec in enumerate(specs, start=first):
            try:
                names = list(spec.computed_features)
            except Exception as exc:
                problems.add(f"spec #{position}: computed_features raised {exc!r:.120}")
                continue
            if self.names is None:
                self.names = names
                self._check_names(names, problems)
            elif names != self.names:
                problems.add(
                    f"spec #{position}: computed_features gives keys {names} but the first "
                    f"spec gives {self.names}; every spec must produce the same keys in the "
                    "same order."
                )
        return self.names or []

    def _check_names(self, names: list[str], problems: Problems) -> None:
        """Computed features are index levels of every table: their names must not be taken
        (the class statement checks @computed_field names; an overridden computed_features
        is only known now)."""
        schema = self.cls.schema
        taken = {name: "an index level of every results table" for name in INDEX_PREFIX}
        taken.update({p.name: f"the input field {p.name!r}" for p in schema.inputs})
        taken.update({p.name: f"the output field {p.name!r}" for p in schema.outputs})
        for name in (*FAILURE_COLUMN_NAMES, *LEAF_STATS_COLUMN_NAMES):
            taken.setdefault(name, "a column the framework adds to failures/leaf_stats")
        for name in names:
            if name in taken and name not in schema.input_type.model_computed_fields:
                problems.add(
                    f"computed feature {name!r} clashes with {taken[name]}; rename it in "
                    f"{schema.input_type.__name__}.computed_features."
                )
