"""Which inputs move each output: rank correlations, and first-order Sobol indices.

Both are computed from the run's rows as they are ("given data"): no extra simulations. A
rank correlation (Spearman's rho) catches any monotone effect of a numeric input; a category
has no order, so it gets the correlation ratio (eta) instead, the share of the output's spread
its categories explain, square-rooted to sit on the same 0..1 scale.

First-order Sobol indices need inputs drawn independently and evenly over their ranges, which
is what a Sobol' design is; the report shows them only then. They are estimated by binning: the
variance of the output's mean within equal-count bins of one input, over the output's variance
(the correlation ratio again, bias-corrected for the finite bins), which converges to
Var(E[Y|X_i]) / Var(Y) as the sample grows.
"""

from __future__ import annotations

import math

import attrs
import numpy as np
import pandas as pd


@attrs.frozen
class Influence:
    """How strongly one input moves one output."""

    input: str
    measure: str
    """``rho`` (Spearman, signed) for a numeric input, ``eta`` (0..1) for a category."""
    value: float
    sobol_first_order: float | None = None

    @property
    def strength(self) -> float:
        return abs(self.value) if math.isfinite(self.value) else 0.0


class Columns:
    """What every output's ranking needs of the inputs, worked out once per input: ranks,
    category codes and quantile bins. A report ranks the inputs for each of its outputs, so
    recomputing them per output would repeat the same sorts ten times over."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self._ranks: dict[str, np.ndarray] = {}
        self._codes: dict[str, np.ndarray] = {}
        self._bins: dict[str, np.ndarray] = {}

    def ranks(self, name: str) -> np.ndarray:
        if name not in self._ranks:
            self._ranks[name] = self.frame[name].rank().to_numpy(dtype=float)
        return self._ranks[name]

    def codes(self, name: str) -> np.ndarray:
        """Category codes of a categorical column."""
        if name not in self._codes:
            self._codes[name] = pd.factorize(self.frame[name], use_na_sentinel=False)[0]
        return self._codes[name]

    def bins(self, name: str) -> np.ndarray:
        """Equal-count bins of a numeric column, about sqrt(n)/2 of them (2 to 50)."""
        if name not in self._bins:
            n = len(self.frame)
            count = max(2, min(50, round(math.sqrt(n) / 2)))
            order = np.argsort(self.frame[name].to_numpy(dtype=float), kind="stable")
            codes = np.empty(n, dtype=np.int64)
            codes[order] = np.arange(n) * count // max(n, 1)
            self._bins[name] = codes
        return self._bins[name]


def rank_inputs(
    frame: pd.DataFrame,
    output: str,
    numeric: list[str],
    categorical: list[str],
    sobol_inputs: list[str] | None = None,
    columns: Columns | None = None,
) -> list[Influence]:
    """The inputs of ``frame`` ordered by how strongly they move ``output``, strongest first.

    ``sobol_inputs``: the inputs of a Sobol' design, which also get a first-order index.
    ``columns``: the inputs' ranks and bins when several outputs of one frame are ranked.
    """
    missing = frame[output].isna().to_numpy()
    if missing.any() or columns is None:
        frame = frame[~missing]
        columns = Columns(frame)
    y = frame[output].to_numpy(dtype=float)
    y_ranks = pd.Series(y).rank().to_numpy(dtype=float)
    found = []
    for name in [*numeric, *categorical]:
        is_category = name in categorical
        if is_category:
            value = _eta(columns.codes(name), y)
        else:
            value = _spearman(columns.ranks(name), y_ranks)
        first_order = None
        if sobol_inputs is not None and name in sobol_inputs:
            codes = columns.codes(name) if is_category else columns.bins(name)
            first_order = _first_order(codes, y)
        found.append(Influence(name, "eta" if is_category else "rho", value, first_order))
    return sorted(found, key=lambda f: -f.strength)


def _spearman(rx: np.ndarray, ry: np.ndarray) -> float:
    """Pearson's correlation of ranks; NaN when either side is constant.

    Rows where the input is missing (an optional input left at None) are left out, and both
    sides ranked again without them.
    """
    missing = np.isnan(rx)
    if missing.any():
        keep = ~missing
        rx = pd.Series(rx[keep]).rank().to_numpy(dtype=float)
        ry = pd.Series(ry[keep]).rank().to_numpy(dtype=float)
    if len(ry) < 3 or rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _eta(codes: np.ndarray, y: np.ndarray) -> float:
    share = _between_share(codes, y, corrected=False)
    return math.sqrt(share) if math.isfinite(share) else math.nan


def _first_order(codes: np.ndarray, y: np.ndarray) -> float:
    share = _between_share(codes, y, corrected=True)
    return min(1.0, max(0.0, share)) if math.isfinite(share) else math.nan


def _between_share(codes: np.ndarray, y: np.ndarray, *, corrected: bool) -> float:
    """The share of y's variance that lies between the groups ``codes``.

    ``corrected`` removes the part that bin means scatter by chance alone: each of B group
    means carries noise of variance sigma_within^2 / n_b, which adds about (B - 1) / n *
    sigma_within^2 to the between-group variance.
    """
    n = len(y)
    if n < 3:
        return math.nan
    total = float(np.var(y))
    if total == 0:
        return math.nan
    counts = np.bincount(codes).astype(float)
    present = counts > 0
    sums = np.bincount(codes, weights=y)[present]
    counts = counts[present]
    means = sums / counts
    between = float(np.sum(counts * (means - y.mean()) ** 2) / n)
    groups = len(counts)
    if corrected and n > groups:
        within = (total - between) * n / (n - groups)
        between -= (groups - 1) / n * within
    return between / total
