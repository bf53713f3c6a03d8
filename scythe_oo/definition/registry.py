"""The registry: experiment name -> Experiment class, and discovery of user modules.

The metaclass only calls ``register``; everything else (lookup, discovery) lives here, so that a
worker can find experiments by importing a package, as Scrapy's SpiderLoader finds spiders.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable
from types import ModuleType
from typing import Generic, Protocol, TypeVar

from scythe_oo.definition.errors import ExperimentDefinitionError, UnknownExperimentError


class Named(Protocol):
    """What the registry needs of a class: its experiment name and where it is defined."""

    @property
    def name(self) -> str: ...


ClassT = TypeVar("ClassT", bound=Named)


def location(cls: object) -> str:
    """``module.QualName`` of a class, as users find it in their code."""
    module = getattr(cls, "__module__", "?")
    # A spawn/forkserver child re-imports the user's script as __mp_main__: same class.
    if module == "__mp_main__":
        module = "__main__"
    return f"{module}.{getattr(cls, '__qualname__', '?')}"


class ExperimentRegistry(Generic[ClassT]):
    """Maps names to experiment classes. Re-defining the same module.qualname replaces it
    (a re-run notebook cell, a reloaded module); a second class with the same name elsewhere is
    an error naming both places."""

    def __init__(self) -> None:
        self._by_name: dict[str, ClassT] = {}

    def register(self, cls: ClassT) -> None:
        existing = self._by_name.get(cls.name)
        if existing is not None and location(existing) != location(cls):
            raise ExperimentDefinitionError(
                f"{location(cls)}: the experiment name {cls.name!r} is already taken by "
                f"{location(existing)}; set a distinct `name = ...` on one of them."
            )
        self._by_name[cls.name] = cls

    def get(self, name: str) -> ClassT:
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self._by_name, n=3)
            hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
            known = ", ".join(sorted(self._by_name)) or "none"
            raise UnknownExperimentError(
                f"no experiment is registered as {name!r}.{hint} Registered: {known}. A worker "
                "only knows the experiments of the modules it imported: start it with "
                "`scythe-oo worker <your package>`."
            ) from None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def all(self) -> list[ClassT]:
        """Every registered class, in name order."""
        return [self._by_name[name] for name in sorted(self._by_name)]

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def discover(self, modules: Iterable[str | ModuleType]) -> list[ClassT]:
        """Import each module (recursing into packages) and return the experiments defined in
        them, each once, in name order."""
        found: dict[str, ClassT] = {}
        for module in modules:
            for mod in _walk(module):
                for cls in self._by_name.values():
                    if cls.__module__ == mod.__name__:
                        found[cls.name] = cls
        return [found[name] for name in sorted(found)]


def _walk(module: str | ModuleType) -> list[ModuleType]:
    mod = importlib.import_module(module) if isinstance(module, str) else module
    result = [mod]
    if hasattr(mod, "__path__"):
        for info in pkgutil.walk_packages(mod.__path__, prefix=f"{mod.__name__}."):
            result.append(importlib.import_module(info.name))
    return result
