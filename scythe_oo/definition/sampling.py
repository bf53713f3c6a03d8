"""Drawing specs from the design space: Latin hypercube, Sobol', Halton, random or a grid.

Points of the unit hypercube come from ``scipy.stats.qmc`` (the space-filling designs are
subtle enough that a hand-written one is a bug waiting to happen); ``space`` maps them onto
each field. Specs are made and validated a chunk at a time, so a sweep of 10^6 never exists as
10^6 pydantic objects unless the caller asks for a list. Everything follows from the seed and
not from the chunk size: the same call always gives the same specs.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, TypeAdapter, ValidationError

from scythe_oo.definition.design import Design, M, SampledSpecs, SpecChunks
from scythe_oo.definition.errors import DesignError
from scythe_oo.definition.space import DesignSpace, DimensionKind, design_space

Method = Literal["lhs", "sobol", "halton", "random", "grid"]
METHODS: tuple[str, ...] = ("lhs", "sobol", "halton", "random", "grid")

MAX_GRID = 1_000_000
"""Largest full factorial ``sample(method="grid")`` makes unless ``max_grid`` says more."""

CHUNK_ROWS = 10_000
"""Specs made and validated per chunk when the caller does not choose."""

MAX_LISTED_PROBLEMS = 10


def sample_specs(
    model: type[M],
    n: int | None,
    method: str,
    *,
    seed: int,
    fixed: Mapping[str, Any] | None,
    choices: Mapping[str, Sequence[Any]] | None,
    ranges: Mapping[str, tuple[float, float]] | None,
    levels: int | Mapping[str, int] | None,
    max_grid: int,
    chunk_size: int | None,
) -> SampledSpecs[M] | SpecChunks[M]:
    """``model.sample``: see ExperimentInputSpec.sample for the arguments."""
    where = f"{model.__name__}.sample"
    if method not in METHODS:
        raise DesignError(f"{where}: method {method!r} is not one of {', '.join(METHODS)}.")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise DesignError(f"{where}: seed must be an integer >= 0, got {seed!r}.")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise DesignError(f"{where}: chunk_size must be a positive integer, got {chunk_size!r}.")
    space = design_space(model, fixed=fixed or {}, choices=choices or {}, ranges=ranges or {})
    if method == "grid":
        grid, resolved = _grid_levels(where, space, levels)
        n = _grid_size(where, space, grid, n, max_grid)
    else:
        if levels is not None:
            raise DesignError(f"{where}: levels= is for method='grid' only.")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DesignError(f"{where}: n must be a positive integer, got {n!r}.")
        grid, resolved = [], {}
        if method == "sobol" and n & (n - 1):
            warnings.warn(
                f"{where}: Sobol' points are balanced when n is a power of 2; n={n} is not "
                f"({1 << (n - 1).bit_length()} would be).",
                UserWarning,
                stacklevel=3,
            )
    design = Design(
        method=method,
        n=n,
        seed=seed,
        input_class=f"{model.__module__}:{model.__qualname__}",
        dimensions={d.name: d.describe() for d in space.dimensions},
        fixed=dict(space.fixed),
        choices={k: list(v) for k, v in (choices or {}).items()},
        ranges={k: [float(x) for x in v] for k, v in (ranges or {}).items()},
        levels=resolved,
        defaults=list(space.defaults),
    )
    design = Design.from_dict(design.to_dict())  # plain data from here on, as a manifest holds it
    rows = chunk_size or CHUNK_ROWS
    total = n

    def blocks() -> Iterator[list[Any]]:
        if method == "grid":
            return _grid_blocks(grid, total, rows)
        return _unit_blocks(method, total, len(space.dimensions), seed, rows)

    def produce() -> Iterator[list[M]]:
        first = 0
        for block in blocks():
            yield _specs(model, space, block, first)
            first += len(block[0]) if block else 0

    def columns() -> Iterator[dict[str, Any]]:
        for block in blocks():
            yield _block_columns(model, space, block)

    if chunk_size is None:
        return SampledSpecs((spec for chunk in produce() for spec in chunk), design)
    # The columns are only of use to allocate for a plain model (it checks, and takes them
    # as it takes a table's); a sweep with nothing sampled stays a list of specs.
    return SpecChunks(
        produce, n, design, model=model, columns=columns if space.dimensions else None
    )


# --------------------------------------------------------------------------- unit points


def _unit_blocks(method: str, n: int, d: int, seed: int, rows: int) -> Iterator[list[Any]]:
    """Blocks of at most ``rows`` points of the unit hypercube, as one array per dimension."""
    if method == "lhs":
        # A Latin hypercube's strata depend on n, so it is drawn whole (n x d floats).
        whole = _engine("lhs", d, seed).random(n) if d else np.empty((n, 0))
        for start in range(0, n, rows):
            yield _columns(whole[start : start + rows], d)
        return
    engine: Any = np.random.default_rng(seed) if method == "random" else _engine(method, d, seed)
    for start in range(0, n, rows):
        count = min(rows, n - start)
        if not d:
            points = np.empty((count, 0))
        elif method == "random":
            points = engine.random((count, d))
        else:
            with warnings.catch_warnings():  # balance is about n, warned once in sample_specs
                warnings.simplefilter("ignore", UserWarning)
                points = engine.random(count)
        yield _columns(points, d)


def _engine(method: str, d: int, seed: int) -> Any:
    """A scipy.stats.qmc engine; scipy is imported only when a sample is drawn."""
    from scipy.stats import qmc  # heavy (about 0.3 s), needed only to draw a design

    if method == "lhs":
        return qmc.LatinHypercube(d, rng=seed)
    if method == "sobol":
        return qmc.Sobol(d, scramble=True, rng=seed)
    return qmc.Halton(d, scramble=True, rng=seed)


def _columns(points: np.ndarray, d: int) -> list[Any]:
    return [points[:, j] for j in range(d)] or [np.empty(len(points))]


# --------------------------------------------------------------------------- grids


def _grid_levels(
    where: str, space: DesignSpace, levels: int | Mapping[str, int] | None
) -> tuple[list[list[Any]], dict[str, int]]:
    """The values of each dimension in a full factorial, and the levels asked of each numeric
    one (what the design records: an integer field may have fewer distinct values)."""
    per_field: Mapping[str, int] = levels if isinstance(levels, Mapping) else {}
    numeric = [d.name for d in space.dimensions if d.kind is not DimensionKind.CATEGORY]
    extra = sorted(set(per_field) - set(numeric))
    if extra:
        raise DesignError(
            f"{where}: levels given for {extra}, which are not sampled numeric fields "
            f"({', '.join(numeric) or 'none'}); categories and choices always take every value."
        )
    missing = [n for n in numeric if n not in per_field]
    if missing and not isinstance(levels, int):
        raise DesignError(
            f"{where}: a grid needs levels for {missing}: pass levels=5 for all, or "
            "levels={name: count} for each numeric field."
        )
    values = []
    asked = {}
    for dimension in space.dimensions:
        count = per_field.get(dimension.name, levels if isinstance(levels, int) else 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise DesignError(f"{where}: levels for {dimension.name} must be >= 1, got {count!r}.")
        values.append(dimension.levels(count))
        if dimension.name in numeric:
            asked[dimension.name] = count
    return values, asked


def _grid_size(
    where: str, space: DesignSpace, grid: list[list[Any]], n: int | None, max_grid: int
) -> int:
    size = math.prod(len(v) for v in grid)
    if size > max_grid:
        pairs = zip(space.dimensions, grid, strict=True)
        shape = " x ".join(f"{d.name}:{len(v)}" for d, v in pairs)
        raise DesignError(
            f"{where}: the full factorial ({shape}) has {size:,} specs, more than "
            f"max_grid={max_grid:,}. Use fewer levels, or pass max_grid={size} to make it anyway."
        )
    if n is not None and n != size:
        raise DesignError(
            f"{where}: a grid's size follows from its levels ({size:,} specs); pass n=None "
            f"(or n={size}), not n={n}."
        )
    return size


def _grid_blocks(grid: list[list[Any]], n: int, rows: int) -> Iterator[list[Any]]:
    """Blocks of grid points in row-major order (the last field varies fastest)."""
    shape = tuple(len(v) for v in grid)
    for start in range(0, n, rows):
        flat = np.arange(start, min(start + rows, n))
        index = np.unravel_index(flat, shape) if shape else ()
        yield [
            [values[i] for i in column.tolist()] for values, column in zip(grid, index, strict=True)
        ] or [[None] * len(flat)]


# --------------------------------------------------------------------------- specs


@functools.cache
def _adapter(model: type[BaseModel]) -> TypeAdapter[list[Any]]:
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _specs(model: type[M], space: DesignSpace, block: list[Any], first: int) -> list[M]:
    """Validated specs for one block; ``block`` holds unit points, or grid values, per field."""
    dims = space.dimensions
    count = len(block[0])
    drawn = _drawn(space, block)
    names = list(drawn)
    if dims:
        rows = [
            {**space.fixed, **dict(zip(names, values, strict=True))}
            for values in zip(*drawn.values(), strict=True)
        ]
    else:
        rows = [dict(space.fixed) for _ in range(count)]
    try:
        specs: list[M] = _adapter(model).validate_python(rows)
    except ValidationError as exc:
        raise _invalid(model, exc, first) from None
    return specs


def _block_columns(model: type[BaseModel], space: DesignSpace, block: list[Any]) -> dict[str, Any]:
    """One block as every field's values (sampled, pinned, or the field's default): what
    ``_specs`` validates, as columns."""
    count = len(block[0]) if block else 0
    columns = _drawn(space, block)
    for name, value in space.fixed.items():
        columns[name] = [value] * count
    for name in space.defaults:
        columns[name] = [model.model_fields[name].get_default(call_default_factory=True)] * count
    return columns


def _drawn(space: DesignSpace, block: list[Any]) -> dict[str, Any]:
    """Each sampled field's values in one block: unit points mapped onto the field, or grid
    values as they are."""
    return {
        d.name: d.from_unit(block[j]) if isinstance(block[j], np.ndarray) else block[j]
        for j, d in enumerate(space.dimensions)
    }


def _invalid(model: type[BaseModel], exc: ValidationError, first: int) -> DesignError:
    """The sampled specs that break the model's own validators, named, with the way out."""
    errors = exc.errors()
    listed = [
        f"spec #{first + int(e['loc'][0])}: {'.'.join(map(str, e['loc'][1:])) or '<spec>'}: "
        f"{e['msg']}"
        for e in errors[:MAX_LISTED_PROBLEMS]
    ]
    more = len(errors) - len(listed)
    return DesignError(
        f"{model.__name__}.sample drew {len(errors)} spec(s) that the model rejects:\n  "
        + "\n  ".join(listed)
        + (f"\n  ... and {more} more" if more else "")
        + "\nThe schema's bounds allow values its validators refuse; narrow the sampled "
        "ranges with ranges={name: (low, high)} or hold fields with fixed={name: value}."
    )
