"""Checking specs before anything is written: every spec, every field, one error for all.

A sweep of 10^5 specs with three bad ones should say so at once, naming each position and
field, not after the run folder is made or the first worker chokes. Validation runs a chunk at
a time with one pydantic call per chunk (the slow path spec by spec only when a chunk has a
problem), so the caller's list is never copied whole.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
from pydantic import ValidationError

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.schema import INDEX_PREFIX
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.driver.input_files import LocalFile, LocalFiles
from scythe_oo.runfolder import specs as specs_format
from scythe_oo.runfolder.specs import EncodedChunk, encode_chunk

MAX_LISTED_ERRORS = 20
"""Problems listed in one SpecValidationError; the count of the rest follows."""


def as_list(cls: AnyExperiment, specs: Any) -> list[Any]:
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Iterable):
        raise SpecValidationError(
            f"{cls.name}.allocate expects a {cls.schema.input_type.__name__} or a sequence of "
            f"them, got {type(specs).__name__}."
        )
    items = list(specs)
    if not items:
        raise SpecValidationError(
            f"{cls.name}.allocate got zero specs; pass at least one "
            f"{cls.schema.input_type.__name__}."
        )
    return items


def _revalidated(input_type: type[ExperimentInputSpec], item: Any) -> Any:
    """A validated copy of ``item``. The shallow field mapping is re-validated, which catches
    values mutated after construction without copying the caller's nested objects."""
    return input_type.model_validate(fields_of(input_type, item))


def fields_of(input_type: type[ExperimentInputSpec], item: Any) -> Any:
    """What to validate: a spec's current field values (copied, so validation cannot touch the
    caller's object), or the item itself when it is not a spec (a dict, say)."""
    return dict(item.__dict__) if isinstance(item, input_type) else item


VALIDATE_ROWS = 4096
"""Specs validated and encoded per call: few enough that no copy of a large sweep is held."""


@attrs.frozen
class SpecScan:
    """What the first pass over the specs learned: local files, computed feature names and,
    for a sweep that fits in one chunk of specs.pq, that chunk's columns.

    Validated copies themselves are not kept: for 10^6 specs they would double the memory
    allocate needs. A sweep of up to SPECS_CHUNK_ROWS specs is encoded as it is checked, so
    its specs are validated once; a larger one is validated again, chunk by chunk, as
    specs.pq is written (``specs_tables``), so allocate never holds more than one chunk.
    """

    files: dict[str, dict[Path, LocalFile]]
    computed: list[str]
    encoded: list[EncodedChunk] | None


def scan_specs(cls: AnyExperiment, items: Sequence[Any]) -> SpecScan:
    """Check every spec and every local file; one error lists every problem found."""
    problems: list[str] = []
    files = LocalFiles(cls)
    features = _Features(cls)
    encoded: list[EncodedChunk] | None = [] if len(items) <= specs_format.SPECS_CHUNK_ROWS else None
    for first in range(0, len(items), VALIDATE_ROWS):
        positions, valid = _validate_chunk(
            cls, items[first : first + VALIDATE_ROWS], first, problems
        )
        if cls.schema.file_inputs:
            for position, spec in zip(positions, valid, strict=True):
                files.add(position, spec)
        names = features.check(positions, valid, problems)
        if encoded is not None and not problems:
            encoded.append(encode_chunk(cls.schema, valid, names))
    if problems:
        listed = problems[:MAX_LISTED_ERRORS]
        more = len(problems) - len(listed)
        raise SpecValidationError(
            f"{cls.name}.allocate: {len(problems)} problem(s) in the specs; nothing was written. "
            "Fix these and allocate again:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
        )
    files.raise_problems()
    return SpecScan(files.files, features.names or [], encoded)


def _foreign(input_type: type[ExperimentInputSpec], item: Any) -> bool:
    """A spec of another experiment."""
    return type(item) is not input_type and (
        isinstance(item, ExperimentInputSpec) and not isinstance(item, input_type)
    )


def _validate_chunk(
    cls: AnyExperiment, chunk: Sequence[Any], first: int, problems: list[str]
) -> tuple[list[int], list[Any]]:
    """The positions and validated copies of the valid specs of ``chunk``, which starts at
    position ``first``; a problem for each invalid one."""
    input_type = cls.schema.input_type
    if not any(_foreign(input_type, item) for item in chunk):
        try:
            specs = cls.schema.spec_list.validate_python(
                [fields_of(input_type, item) for item in chunk]
            )
            return list(range(first, first + len(chunk))), specs
        except ValidationError:
            pass  # the slow path below tells exactly which spec failed, and why
    found = _validate_one_by_one(cls, chunk, first, problems)
    return [position for position, _ in found], [spec for _, spec in found]


def _validate_one_by_one(
    cls: AnyExperiment, chunk: Sequence[Any], first: int, problems: list[str]
) -> list[tuple[int, Any]]:
    """The valid specs of ``chunk`` with their positions; a problem for each invalid one."""
    input_type = cls.schema.input_type
    valid = []
    for position, item in enumerate(chunk, start=first):
        if _foreign(input_type, item):
            problems.append(
                f"spec #{position}: is a {type(item).__name__}, but {cls.name} takes "
                f"{input_type.__name__}; allocate it with the experiment it belongs to."
            )
            continue
        try:
            valid.append((position, _revalidated(input_type, item)))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(map(str, error["loc"])) or "<spec>"
                problems.append(
                    f"spec #{position}: field {where!r}: {error['msg']} "
                    f"(got {error.get('input')!r:.80})"
                )
    return valid


class _Features:
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

    def check(
        self, positions: Sequence[int], specs: Sequence[Any], problems: list[str]
    ) -> list[str]:
        if self.constant:
            self.names = []
            return []
        for position, spec in zip(positions, specs, strict=True):
            names = list(spec.computed_features)
            if self.names is None:
                self.names = names
                _check_computed_names(self.cls, names)
            elif names != self.names:
                problems.append(
                    f"spec #{position}: computed_features gives keys {names} but the first "
                    f"spec gives {self.names}; every spec must produce the same keys in the "
                    "same order."
                )
        return self.names or []


def _check_computed_names(cls: AnyExperiment, names: list[str]) -> None:
    reserved = set(INDEX_PREFIX) | {p.name for p in cls.schema.inputs}
    clash = sorted(set(names) & reserved)
    if clash:
        raise SpecValidationError(
            f"{cls.name}: computed feature(s) {clash} reuse input field names; rename them."
        )
