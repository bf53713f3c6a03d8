"""The report's figures, drawn with matplotlib and embedded as PNG data URIs.

PNG rather than SVG: a scatter of thousands of points is a few dozen KiB as pixels and
megabytes as vectors, and a data URI keeps the page one self-contained file. Figures are made
with ``matplotlib.figure.Figure`` directly, never through pyplot, so drawing a report changes
no global state in the researcher's session (their backend, their open figures).

This module needs the ``[report]`` extra; ``report`` imports it only when a report is drawn.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from scythe_oo.driver.report_data import MAX_CATEGORIES, Histogram, LeafTimes

DPI = 80
PANEL = (3.2, 2.4)
"""Inches of one small panel."""
COLUMNS = 4
SCATTER_UP_TO = 3_000
"""Above this many rows a panel is a hexbin (a density) instead of a scatter of points."""
COLOR = "#3b6ea8"


def data_uri(figure: Figure) -> str:
    """The figure as a base64 PNG data URI."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _grid(count: int, columns: int = COLUMNS) -> tuple[Figure, list[Axes]]:
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    width, height = PANEL[0] * columns, PANEL[1] * rows
    figure = Figure(figsize=(width, height))
    # Fixed margins (in inches, as fractions) instead of a layout engine: working out tight
    # boxes for 100 panels took most of a 10^6-row report's time.
    figure.subplots_adjust(
        left=0.6 / width,
        right=1 - 0.15 / width,
        bottom=0.95 / height,
        top=1 - 0.3 / height,
        wspace=0.35,
        hspace=0.45 + 0.25 * (rows > 1),
    )
    axes = figure.subplots(rows, columns, squeeze=False).ravel().tolist()
    for spare in axes[count:]:
        spare.set_visible(False)
    return figure, axes[:count]


def histograms(named: dict[str, Histogram]) -> str:
    """One panel per output: exact counts over every row."""
    figure, axes = _grid(len(named))
    for ax, (name, hist) in zip(axes, named.items(), strict=True):
        _draw_histogram(ax, hist)
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("rows", fontsize=8)
    return data_uri(figure)


def _draw_histogram(ax: Axes, hist: Histogram) -> None:
    if hist.labels is not None:
        ax.bar(range(len(hist.labels)), hist.counts, color=COLOR)
        ax.set_xticks(range(len(hist.labels)), hist.labels, rotation=45, ha="right", fontsize=7)
    elif len(hist.counts):
        assert hist.edges is not None
        ax.stairs(hist.counts, hist.edges, fill=True, color=COLOR)
    else:
        ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
    if hist.missing:
        ax.text(
            0.98,
            0.95,
            f"{hist.missing:,} missing",
            ha="right",
            va="top",
            fontsize=7,
            transform=ax.transAxes,
        )
    ax.tick_params(labelsize=7)
    ax.locator_params(axis="x", nbins=5)


def against_inputs(
    frame: pd.DataFrame, output: str, numeric: Sequence[str], categorical: Sequence[str]
) -> str:
    """``output`` against each input: a scatter (hexbin when dense) per numeric input, a box
    plot per categorical input."""
    inputs = [*numeric, *categorical]
    figure, axes = _grid(len(inputs))
    rows = frame[np.isfinite(frame[output].to_numpy(dtype=float))]
    y = rows[output].to_numpy(dtype=float)
    for ax, name in zip(axes, inputs, strict=True):
        if name in numeric:
            x = rows[name].to_numpy(dtype=float)
            present = np.isfinite(x)  # an optional input may be missing
            x, shown = x[present], y[present]
            if len(shown) > SCATTER_UP_TO:
                ax.hexbin(x, shown, gridsize=30, bins="log", cmap="Blues", mincnt=1)
            else:
                ax.scatter(x, shown, s=6, alpha=0.6, color=COLOR, linewidths=0)
        else:
            _box(ax, rows[name], y)
        ax.set_xlabel(name, fontsize=8)
        ax.set_ylabel(output, fontsize=8)
        ax.tick_params(labelsize=7)
        if name in numeric:
            ax.locator_params(axis="x", nbins=5)
    return data_uri(figure)


def _box(ax: Axes, x: pd.Series, y: np.ndarray) -> None:
    """Box plots of y by category: the most frequent categories (at most 20), by name."""
    labels = sorted(x.value_counts().index[:MAX_CATEGORIES].tolist(), key=str)
    groups = [y[(x == label).to_numpy()] for label in labels]
    ax.boxplot(groups, showfliers=False)
    ax.set_xticks(
        range(1, len(labels) + 1), [_short(v) for v in labels], rotation=30, ha="right", fontsize=7
    )


def _short(value: object) -> str:
    """A category as a tick label: a file reference by its file name, at most 16 characters."""
    text = str(value).rstrip("/").rsplit("/", 1)[-1]
    return text if len(text) <= 16 else text[:15] + "…"


def leaf_figures(leaves: LeafTimes) -> str:
    """Leaf durations, peak memory per leaf, and leaves finished per minute over the run."""
    figure, axes = _grid(3, columns=3)
    _draw_histogram(axes[0], leaves.durations)
    axes[0].set_title("leaf wall time", fontsize=10)
    axes[0].set_xlabel("seconds", fontsize=8)
    _draw_histogram(axes[1], leaves.memory)
    axes[1].set_title("peak memory per leaf", fontsize=10)
    axes[1].set_xlabel("MiB (worker process)", fontsize=8)
    ax = axes[2]
    if len(leaves.throughput_start):
        start = leaves.throughput_start[0]
        minutes = (leaves.throughput_start - start).astype("timedelta64[us]").astype(float) / 6e7
        ax.step(minutes, leaves.throughput_per_minute, where="post", color=COLOR)
        ax.fill_between(minutes, leaves.throughput_per_minute, step="post", alpha=0.3, color=COLOR)
        ax.set_xlabel(f"minutes since {str(start)[:19]} UTC", fontsize=8)
    ax.locator_params(axis="x", nbins=5)
    ax.set_title("throughput", fontsize=10)
    ax.set_ylabel("leaves / minute", fontsize=8)
    ax.tick_params(labelsize=7)
    return data_uri(figure)
