"""A design: how a set of specs was drawn, kept beside the specs so it can be drawn again.

``allocate`` copies the design of sampled specs into manifest.yml, and the report reads it
back (a Sobol design earns Sobol indices). The specs themselves come either as a list
(``SampledSpecs``) or, for sweeps too big to hold as pydantic objects, as chunks made on
demand (``SpecChunks``); both carry the design as ``.design``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

import attrs
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

M = TypeVar("M", bound=BaseModel)


@attrs.frozen(kw_only=True)
class Design:
    """The arguments a sample was drawn with, as plain data (what manifest.yml records).

    ``dimensions`` lists the sampled fields in order (the columns of the unit hypercube) with
    their ranges or values; ``defaults`` names the fields left at their declared default.
    """

    method: str
    n: int
    seed: int
    input_class: str
    dimensions: dict[str, dict[str, Any]]
    fixed: dict[str, Any] = attrs.field(factory=dict)
    choices: dict[str, list[Any]] = attrs.field(factory=dict)
    ranges: dict[str, list[float]] = attrs.field(factory=dict)
    levels: dict[str, int] = attrs.field(factory=dict)
    """Grid designs only: the number of levels of each numeric field."""
    defaults: list[str] = attrs.field(factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (YAML- and JSON-safe): file paths as strings, enums as their values."""
        data: dict[str, Any] = to_jsonable_python(attrs.asdict(self))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Design:
        known = {a.name for a in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def arguments(self) -> dict[str, Any]:
        """Keyword arguments of ``MyInput.sample`` that draw this design again.

        Values are plain data; validation turns them back into paths and enums, so the specs
        drawn are equal to the original ones.
        """
        arguments: dict[str, Any] = {
            "n": None if self.method == "grid" else self.n,
            "method": self.method,
            "seed": self.seed,
            "fixed": self.fixed,
            "choices": self.choices,
            "ranges": {k: tuple(v) for k, v in self.ranges.items()},
        }
        if self.method == "grid":
            arguments["levels"] = self.levels
            arguments["max_grid"] = max(self.n, 1)
        return arguments


class SampledSpecs(list[M], Generic[M]):
    """A list of sampled specs that remembers its design, for ``allocate`` to record.

    A slice or a copy is a plain list, without the design: it is no longer that sample.
    """

    def __init__(self, specs: Iterable[M], design: Design) -> None:
        super().__init__(specs)
        self.design = design


class SpecChunks(Generic[M]):
    """A sweep as lists of validated specs, made one list at a time whenever it is iterated.

    For sweeps too big to hold as pydantic objects: ``allocate`` and ``estimate`` take it as
    it is; ``list(chunks.specs())`` or ``chunks.to_list()`` materialises it.
    """

    def __init__(
        self,
        produce: Callable[[], Iterator[list[M]]],
        n: int,
        design: Design,
        *,
        model: type[M] | None = None,
        columns: Callable[[], Iterator[dict[str, Any]]] | None = None,
    ) -> None:
        self._produce = produce
        self.n = n
        self.design = design
        self.model = model
        self._columns = columns

    def column_blocks(self) -> Iterator[dict[str, Any]] | None:
        """The same sweep as blocks of columns (each field's values, by name, as the
        sampler drew them), which ``allocate`` takes as a table when the model is plain,
        without building one object per spec; None where there are none (a file's specs)."""
        return None if self._columns is None else self._columns()

    def __iter__(self) -> Iterator[list[M]]:
        return self._produce()

    def __len__(self) -> int:
        return self.n

    def specs(self) -> Iterator[M]:
        """Every spec, one at a time; one chunk is held at once."""
        for chunk in self:
            yield from chunk

    def to_list(self) -> SampledSpecs[M]:
        """All specs at once, with the design: for sweeps that fit in memory."""
        return SampledSpecs(self.specs(), self.design)

    def __repr__(self) -> str:
        return f"SpecChunks(n={self.n}, method={self.design.method!r}, seed={self.design.seed})"
