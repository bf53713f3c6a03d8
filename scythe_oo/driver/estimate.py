"""A pilot estimate: run a random few specs here, and project the whole sweep from them.

10^6 runs are cheap to launch and expensive to regret. A pilot of a few dozen specs, drawn at
random so that slow corners of the design space are represented, measures what a leaf costs
(wall time, peak memory, how often it fails) and projects the sweep's wall time, core-hours
and price before anything big is launched. It runs in a throwaway local store, so it leaves
no run folder and bumps no version, and one leaf per batch, so each leaf's memory is its own.
"""

from __future__ import annotations

import math
import random
import statistics
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import attrs
import pandas as pd

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.driver.allocate import allocate_run
from scythe_oo.engine.protocol import Engine
from scythe_oo.storage.local import LocalStore

TASK_OVERHEAD_SECONDS = 0.2
"""What dispatching one task costs a distributed worker: BENCHMARKS.md measured 41 bare Hatchet
tasks a second on 8 slots, about 0.2 s per task and slot."""

OVERHEAD_SHARE = 0.05
"""The suggested ``min_batch_seconds`` keeps task overhead under this share of the work."""

BATCHES_PER_WORKER = 20
"""...but leaves each worker at least this many batches, so the sweep's tail stays balanced."""

TIMEOUT_FACTOR = 3.0
TIMEOUT_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 43200, 86400)
"""The suggested timeout is the first of these above 3x the slowest pilot leaf."""

Z90 = 1.645
"""Two-sided 90% normal quantile, for the projection's error bar."""


@attrs.frozen(kw_only=True)
class Spread:
    """Median, 90th percentile, maximum, mean and standard deviation of a measurement."""

    median: float
    p90: float
    max: float
    mean: float
    sd: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        ordered = sorted(values)
        p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
        sd = statistics.stdev(ordered) if len(ordered) > 1 else 0.0
        return cls(
            median=statistics.median(ordered),
            p90=p90,
            max=ordered[-1],
            mean=statistics.fmean(ordered),
            sd=sd,
        )


@attrs.frozen(kw_only=True)
class Estimate:
    """What a pilot measured, what it projects for the whole sweep, and what it suggests.

    Projections count leaf compute only, one core per leaf: queueing, scatter/gather and
    start-up time come on top, and a different machine runs at a different speed.
    """

    experiment: str
    n_specs: int
    """Specs in the whole sweep."""
    pilot: int
    """Specs the pilot ran."""
    failed: int
    errors: dict[str, int]
    """Failed pilot leaves by error type."""
    failed_positions: tuple[int, ...]
    """Positions in the sweep of the specs that failed in the pilot."""
    wall_time: Spread
    """Seconds per leaf."""
    peak_rss_mib: Spread
    """Peak resident memory of the worker process while it ran one leaf, MiB."""
    workers: int
    cost_per_core_hour: float | None
    pilot_seconds: float
    """How long the pilot took here, start to finish."""

    @property
    def failure_rate(self) -> float:
        return self.failed / self.pilot

    @property
    def core_hours(self) -> float:
        return self.n_specs * self.wall_time.mean / 3600

    @property
    def wall_seconds(self) -> float:
        """The sweep on ``workers`` workers, each running one leaf at a time."""
        return max(self.n_specs * self.wall_time.mean / self.workers, self.wall_time.max)

    @property
    def cost(self) -> float | None:
        if self.cost_per_core_hour is None:
            return None
        return self.core_hours * self.cost_per_core_hour

    @property
    def relative_error(self) -> float:
        """Half-width of a 90% interval on the mean leaf time, relative to it."""
        if self.wall_time.mean <= 0:
            return 0.0
        return Z90 * self.wall_time.sd / (self.wall_time.mean * math.sqrt(self.pilot))

    @property
    def min_batch_seconds(self) -> float:
        """Suggested ``min_batch_seconds``: 0 when a leaf already outweighs a task's overhead
        (each leaf its own task: exact memory figures, retries leaf by leaf); otherwise long
        enough that the overhead is under 5%, but short enough for 20 batches per worker."""
        target = TASK_OVERHEAD_SECONDS / OVERHEAD_SHARE
        if self.wall_time.median >= target:
            return 0.0
        per_worker = self.n_specs * self.wall_time.mean / self.workers
        return _round_sig(min(target, per_worker / BATCHES_PER_WORKER))

    @property
    def timeout(self) -> str:
        """Suggested execution timeout: 3x the slowest pilot leaf, at least a minute."""
        wanted = TIMEOUT_FACTOR * self.wall_time.max
        seconds = next((s for s in TIMEOUT_STEPS if s >= wanted), math.ceil(wanted / 3600) * 3600)
        return f"{seconds // 3600}h" if seconds % 3600 == 0 else f"{seconds // 60}m"

    def __str__(self) -> str:
        w, m = self.wall_time, self.peak_rss_mib
        failures = f"{self.failed} of {self.pilot} ({self.failure_rate:.1%})"
        if self.errors:
            failures += ": " + ", ".join(f"{k} x{v}" for k, v in self.errors.items())
            shown = ", ".join(map(str, self.failed_positions[:10]))
            more = "..." if len(self.failed_positions) > 10 else ""
            failures += f" (spec positions {shown}{more})"
        cost = "n/a (pass cost_per_core_hour=...)"
        if self.cost is not None:
            amount = f"{self.cost:,.2f}" if self.cost >= 1 else f"{self.cost:.2g}"
            cost = f"${amount} at ${self.cost_per_core_hour:g} per core-hour"
        lines = [
            f"Pilot estimate for {self.experiment}: {self.pilot:,} of {self.n_specs:,} specs, "
            f"chosen at random, run here in {duration(self.pilot_seconds)}",
            f"  leaf wall time   median {duration(w.median)}, p90 {duration(w.p90)}, "
            f"max {duration(w.max)} (mean {duration(w.mean)})",
            f"  peak memory      median {m.median:,.0f} MiB, p90 {m.p90:,.0f} MiB, "
            f"max {m.max:,.0f} MiB (worker process, one leaf at a time)",
            f"  failures         {failures}",
            f"Projected for {self.n_specs:,} specs on {self.workers:,} workers "
            f"(leaf compute only; +/-{self.relative_error:.0%} at 90% from the pilot's spread):",
            f"  wall time        {duration(self.wall_seconds)}",
            f"  core-hours       {self.core_hours:,.3g}",
            f"  cost             {cost}",
            "Suggested settings:",
            f"  min_batch_seconds = {self.min_batch_seconds:g}",
            f'  timeouts = Timeouts(execution="{self.timeout}")   '
            f"(3x the slowest pilot leaf, at least a minute)",
        ]
        if self.wall_time.max > 0 and self.min_batch_seconds == 0:
            lines[-2] += "   (each leaf outweighs a task's ~0.2 s overhead: one leaf per task)"
        elif self.min_batch_seconds > 0:
            lines[-2] += "   (batches keep a task's ~0.2 s overhead under 5% of its work)"
        return "\n".join(lines)


def estimate_sweep(
    cls: AnyExperiment,
    specs: Any,
    *,
    pilot: int,
    workers: int,
    cost_per_core_hour: float | None,
    seed: int,
    engine: Engine,
    progress: bool | None = None,
) -> Estimate:
    """Run ``pilot`` specs drawn at random from ``specs`` on ``engine`` in a temporary store,
    and project the whole sweep from their leaf_stats."""
    if isinstance(pilot, bool) or not isinstance(pilot, int) or pilot < 1:
        raise ValueError(f"pilot must be a positive number of specs, got {pilot!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if cost_per_core_hour is not None and not cost_per_core_hour >= 0:
        raise ValueError(f"cost_per_core_hour must be >= 0, got {cost_per_core_hour!r}")
    chosen, positions, total = pilot_subset(cls, specs, pilot, seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scythe-pilot-") as root:
        run = allocate_run(cls, chosen, store=LocalStore(root=root), engine=engine)
        run.wait(progress=progress)
        stats = run.results.dataframe("leaf_stats")
        failures = run.failures() if not stats["ok"].all() else pd.DataFrame()
    seconds = time.perf_counter() - started
    failed_at: list[int] = []
    errors: dict[str, int] = {}
    if len(failures):
        failed_at = [int(i) for i in failures.index.get_level_values("sort_index")]
        errors = {str(k): int(v) for k, v in failures["error_type"].value_counts().items()}
    return Estimate(
        experiment=cls.name,
        n_specs=total,
        pilot=len(chosen),
        failed=len(failures),
        errors=errors,
        failed_positions=tuple(sorted(positions[i] for i in failed_at)),
        wall_time=Spread.of(stats["wall_time"].astype(float).tolist()),
        peak_rss_mib=Spread.of(stats["peak_rss_mib"].astype(float).tolist()),
        workers=workers,
        cost_per_core_hour=cost_per_core_hour,
        pilot_seconds=seconds,
    )


def pilot_subset(
    cls: AnyExperiment, specs: Any, k: int, seed: int
) -> tuple[list[Any], list[int], int]:
    """``k`` specs drawn uniformly at random (seeded), their positions, and the sweep's size.

    A list is sampled by index; anything else (chunks from ``sample(chunk_size=...)``, a
    generator) is streamed through a reservoir, so only ``k`` specs are ever held.
    """
    rng = random.Random(seed)
    if isinstance(specs, ExperimentInputSpec):
        return [specs], [0], 1
    if isinstance(specs, Sequence) and not isinstance(specs, str | bytes):
        indexes = sorted(rng.sample(range(len(specs)), min(k, len(specs))))
        chosen, total = [specs[i] for i in indexes], len(specs)
    elif isinstance(specs, Iterable) and not isinstance(specs, str | bytes):
        reservoir: list[tuple[int, Any]] = []
        total = 0
        for total, spec in enumerate(_flat(specs), start=1):
            if len(reservoir) < k:
                reservoir.append((total - 1, spec))
            elif (slot := rng.randrange(total)) < k:
                reservoir[slot] = (total - 1, spec)
        reservoir.sort(key=lambda pair: pair[0])
        indexes = [i for i, _ in reservoir]
        chosen = [spec for _, spec in reservoir]
    else:
        raise SpecValidationError(
            f"{cls.name}.estimate expects specs (a list, or what MyInput.sample returns), "
            f"got {type(specs).__name__}."
        )
    if not chosen:
        raise SpecValidationError(f"{cls.name}.estimate got zero specs; there is nothing to pilot.")
    return chosen, indexes, total


def _flat(items: Iterable[Any]) -> Iterator[Any]:
    """Specs from an iterable of specs or of lists of specs (chunks)."""
    for item in items:
        if isinstance(item, list):
            yield from item
        else:
            yield item


def duration(seconds: float) -> str:
    """A duration a person reads at a glance: 850 us, 1.2 ms, 3.4 s, 12 min, 5.1 h, 3.2 days."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _round_sig(value: float) -> float:
    """One significant figure: a setting, not a measurement."""
    if value <= 0:
        return 0.0
    return float(f"{value:.1g}")
