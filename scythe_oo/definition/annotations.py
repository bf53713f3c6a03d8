"""Reading a field's type annotation: the markers the framework tags types with, and the
helpers that see through ``Annotated`` and ``Optional``.

The results schema (``schema``) and the design space (``space``) both classify fields by their
annotations, and the spec bases define the markers; keeping all three readers of one vocabulary
here lets each import it without importing the others.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin


class _FileReferenceMarker:
    """Tags an annotation as a file reference so the framework can find such fields."""

    def __repr__(self) -> str:
        return "FileReference"


class _NotIndexedMarker:
    """Tags an input field that must stay out of the results index."""

    def __repr__(self) -> str:
        return "NotIndexed"


FILE_REFERENCE_MARKER = _FileReferenceMarker()
NOT_INDEXED_MARKER = _NotIndexedMarker()


def strip_annotated(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """The type under any ``Annotated`` layers, and their metadata."""
    metadata: tuple[Any, ...] = ()
    while get_origin(tp) is Annotated:
        args = get_args(tp)
        tp, metadata = args[0], metadata + tuple(args[1:])
    return tp, metadata


def has_marker(tp: Any, marker: object) -> bool:
    """Whether ``marker`` tags ``tp`` or any type nested in it."""
    base, metadata = strip_annotated(tp)
    if any(m is marker for m in metadata):
        return True
    return any(has_marker(arg, marker) for arg in get_args(base))


def split_optional(tp: Any) -> tuple[Any, bool]:
    """``tp`` without ``None`` (a one-member union unwrapped), and whether None was allowed."""
    base, _ = strip_annotated(tp)
    if get_origin(base) in (Union, types.UnionType):
        args = [a for a in get_args(base) if a is not type(None)]
        optional = len(args) < len(get_args(base))
        if len(args) == 1:
            return args[0], optional
        return base, optional
    return base, False


def field_annotation(info: Any) -> Any:
    """A field's annotation with its metadata (pydantic strips Annotated into .metadata)."""
    annotation = info.annotation
    if info.metadata:
        return Annotated[(annotation, *info.metadata)]
    return annotation
