"""Strategies carried by value: a class's import path plus its attrs fields.

A RecursionPolicy or ResultCollector chosen in a notebook must reach every node of the tree,
including nodes that run on other machines and runs resumed days later. Strategies are small
frozen attrs classes, so a plain dictionary holds one: ``{"type": "pkg.module:Class", ...fields}``.
The class is imported again where the strategy is used, so a custom strategy must live in a
module that workers can import; ``check_portable`` says so at allocate time.
"""

from __future__ import annotations

import importlib
from typing import Any, TypeVar

import attrs
import cattrs

from scythe_oo.definition.errors import StrategyError

TYPE_KEY = "type"

_CONVERTER = cattrs.Converter()

T = TypeVar("T")


def type_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def check_portable(value: object, role: str) -> None:
    """Raise StrategyError unless ``value`` can be rebuilt from its dictionary elsewhere."""
    cls = type(value)
    if not attrs.has(cls):
        raise StrategyError(
            f"{role} {value!r} is not an attrs class; strategies are small frozen attrs "
            "classes (@attrs.frozen) so that they can travel to workers by value."
        )
    path = type_path(cls)
    problem = None
    if cls.__module__ in ("__main__", "__mp_main__") or "<locals>" in cls.__qualname__:
        problem = "it is defined in a script, a notebook or a function body"
    else:
        try:
            found = _import(path)
        except StrategyError as exc:
            problem = str(exc)
        else:
            if found is not cls:
                problem = f"{path} imports as a different class"
    if problem is not None:
        raise StrategyError(
            f"{role} {cls.__qualname__} cannot be carried to workers: {problem}. Move the "
            "class into a module of your package (one that `scythe-oo worker <package>` "
            "imports) and import it from there."
        )


def to_portable(value: object) -> dict[str, Any]:
    """``{"type": "module:Class", **fields}`` of an attrs strategy."""
    fields = _CONVERTER.unstructure(value)
    return {TYPE_KEY: type_path(type(value)), **fields}


def from_portable(data: dict[str, Any], expected: type[T]) -> T:
    """Rebuild a strategy; its class must be ``expected`` or a subclass of it."""
    raw = dict(data)
    path = raw.pop(TYPE_KEY, None)
    cls = expected if path is None else _import(path)
    if not (isinstance(cls, type) and issubclass(cls, expected)):
        raise StrategyError(f"{path} is not a {expected.__name__}; the run folder says it is")
    return _CONVERTER.structure(raw, cls)


def _import(path: str) -> Any:
    module_name, _, qualname = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise StrategyError(
            f"cannot import {module_name!r} for the strategy {path}: {exc}. Install the package "
            "that defines it on this machine (workers need it too)."
        ) from exc
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise StrategyError(f"{module_name} has no {qualname!r} (strategy {path})") from None
    return target
