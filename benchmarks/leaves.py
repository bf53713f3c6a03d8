"""The one leaf every contender of peers.py, cores.py, huge.py and hatchet_compare.py computes.

A leaf maps 10 float inputs to 10 float outputs, after an optional CPU spin of a fixed number of
milliseconds. Whatever a contender adds on top of this is its own overhead. The module imports
nothing heavy and nothing of scythe_oo, so that the peers' workers (loky, dask, ray) and the seed
tool's venv can import it cheaply; the scythe_oo experiments that wrap it are in
``benchmarks.experiments``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

N_FIELDS = 10
INPUTS: tuple[str, ...] = tuple(f"x{j}" for j in range(N_FIELDS))
OUTPUTS: tuple[str, ...] = tuple(f"y{j}" for j in range(N_FIELDS))

Row = tuple[float, ...]


def inputs_of(i: int) -> Row:
    """The 10 inputs of leaf ``i``; ``x0 = i`` keeps every row's index unique."""
    base = float(i)
    return tuple(base + j / N_FIELDS for j in range(N_FIELDS))


def spin(seconds: float) -> None:
    """Burn ``seconds`` of this thread's CPU time.

    Thread CPU time, not wall time: a leaf costs the same CPU whether it shares its core, its
    process (Hatchet slots are threads) or neither, so efficiency is comparable across engines.
    """
    if seconds <= 0:
        return
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def compute(x: Sequence[float], spin_s: float = 0.0) -> Row:
    """The leaf itself: spin, then ``y_j = 2 x_j + 1``."""
    spin(spin_s)
    return tuple(2.0 * v + 1.0 for v in x)


def compute_batch(xs: Sequence[Sequence[float]], spin_s: float = 0.0) -> list[Row]:
    """Several leaves in one call, for contenders that batch by hand (ray, batched)."""
    return [compute(x, spin_s) for x in xs]


def write_table(xs: Iterable[Sequence[float]], ys: Iterable[Sequence[float]], path: Path) -> Path:
    """What a hand-written sweep ends with: tuples -> DataFrame -> set_index -> to_parquet."""
    import pandas as pd  # only the drivers need pandas, not the leaves' workers

    rows = [(*x, *y) for x, y in zip(xs, ys, strict=True)]
    frame = pd.DataFrame(rows, columns=[*INPUTS, *OUTPUTS]).set_index(list(INPUTS))
    frame.to_parquet(path)
    return path
