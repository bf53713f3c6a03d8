"""The pilot estimate: a random few specs run here, one leaf per batch, in a throwaway store;
what it measures (wall time, peak memory, failures) and what it projects and suggests."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field

from scythe_oo import (
    Estimate,
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    LocalEngine,
    LocalStore,
)
from scythe_oo.driver.estimate import Spread, pilot_subset

pytestmark = pytest.mark.timeout(180)

BIG_MIB = 200


class Load(ExperimentInputSpec):
    x: float = Field(ge=0, le=1)
    big: bool = False


class Result(ExperimentOutputSpec):
    y: float


class Pilot(Experiment[Load, Result]):
    """Sleeps 50 ms; a ``big`` leaf touches 200 MiB; x > 0.8 fails."""

    name = "test_estimate_pilot"
    min_batch_seconds = 30.0  # batched as far as can be, unless the engine says otherwise

    def run(self, spec: Load, ctx: LeafContext) -> Result:
        time.sleep(0.05)
        if spec.big:
            block = bytearray(BIG_MIB * 2**20)
            block[::4096] = b"x" * len(block[::4096])  # touch every page
            del block
        if spec.x > 0.8:
            raise ValueError(f"x={spec.x} is out of the model's range")
        return Result(y=2 * spec.x)


def specs_of(n: int) -> list[Load]:
    return [Load(x=i / (n - 1), big=i % 2 == 1) for i in range(n)]


def test_a_pilot_of_the_whole_sweep_measures_every_leaf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the default store would be ./scythe-data
    specs = specs_of(11)
    estimate = Pilot.estimate(
        specs, pilot=50, workers=4, cost_per_core_hour=0.015, pilot_workers=2, progress=False
    )
    failing = [i for i, s in enumerate(specs) if s.x > 0.8]
    assert estimate.n_specs == estimate.pilot == 11
    assert estimate.failed == len(failing) == 2
    assert estimate.failed_positions == tuple(failing)
    assert estimate.errors == {"ValueError": 2}
    assert estimate.failure_rate == pytest.approx(2 / 11)
    assert estimate.wall_time.median >= 0.05 and estimate.wall_time.max >= estimate.wall_time.p90
    # One leaf per batch, so a small leaf's peak is its own, not a big neighbour's: 6 of the
    # 11 leaves are small, so the median is a small leaf's figure.
    assert estimate.peak_rss_mib.max >= estimate.peak_rss_mib.median + 0.7 * BIG_MIB
    # the pilot leaves nothing behind: no run folder, no version bumped
    assert not (tmp_path / "scythe-data").exists()
    text = str(estimate)
    pieces = ["11 of 11 specs", "2 of 11 (18.2%)", "ValueError x2", "on 4 workers"]
    pieces += ["core-hours", "$", "min_batch_seconds =", 'Timeouts(execution="1m")']
    for piece in pieces:
        assert piece in text, piece


def test_the_engine_knob_runs_each_leaf_alone_so_memory_is_per_leaf(tmp_path: Path) -> None:
    """The experiment batches its leaves (min_batch_seconds=30); LocalEngine's override runs
    them one per batch, which is what gives a small leaf a small peak."""
    specs = specs_of(8)
    store = LocalStore(tmp_path)
    alone = Pilot.allocate(
        specs, store=store, engine=LocalEngine(max_workers=1, min_batch_seconds=0)
    )
    stats = alone.wait().results.dataframe("leaf_stats").reset_index()
    small = stats[stats["sort_index"] % 2 == 0]["peak_rss_mib"]
    big = stats[stats["sort_index"] % 2 == 1]["peak_rss_mib"]
    assert big.min() >= small.max() + 0.7 * BIG_MIB
    batched = Pilot.allocate(specs, store=store, engine=LocalEngine(max_workers=1))
    together = batched.wait().results.dataframe("leaf_stats").reset_index()
    # Batched, the same small leaves share a batch with a big one and report its peak. (The
    # first two leaves run alone, before any leaf time is known: batches of 1, 1, 3, 2, 1.)
    batched_small = together[together["sort_index"].isin([2, 4, 6])]["peak_rss_mib"]
    assert batched_small.min() >= small.max() + 0.7 * BIG_MIB


def test_a_pilot_draws_at_random_from_chunks_without_holding_them(tmp_path: Path) -> None:
    chunks = Load.sample(512, "sobol", seed=2, chunk_size=64, fixed={"big": False})
    estimate = Pilot.estimate(chunks, pilot=6, workers=10, pilot_workers=2, progress=False)
    assert estimate.n_specs == 512 and estimate.pilot == 6
    assert all(0 <= p < 512 for p in estimate.failed_positions)
    chosen, positions, total = pilot_subset(Pilot, chunks, 6, seed=0)
    assert total == 512 and len(chosen) == 6 and positions == sorted(set(positions))
    everything = list(chunks.specs())
    assert [s.x for s in chosen] == [everything[p].x for p in positions]
    again, same, _ = pilot_subset(Pilot, everything, 6, seed=0)
    assert len(again) == 6 and same == sorted(same)
    with pytest.raises(ValueError, match="zero specs"):
        pilot_subset(Pilot, [], 3, seed=0)
    with pytest.raises(ValueError, match="pilot must be a positive number"):
        Pilot.estimate(everything, pilot=0)


def spread(mean: float, sd: float = 0.0, top: float | None = None) -> Spread:
    return Spread(median=mean, p90=mean, max=top or mean, mean=mean, sd=sd)


def made_up(
    n: int, mean: float, workers: int, price: float | None, top: float | None = None
) -> Estimate:
    return Estimate(
        experiment="e",
        n_specs=n,
        pilot=50,
        failed=0,
        errors={},
        failed_positions=(),
        wall_time=spread(mean, top=top),
        peak_rss_mib=spread(100.0),
        workers=workers,
        cost_per_core_hour=price,
        pilot_seconds=1.0,
    )


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10**7),
    mean=st.floats(1e-4, 1e4),
    workers=st.integers(1, 10_000),
    price=st.none() | st.floats(0, 10),
)
def test_the_projection_is_leaf_time_over_workers(
    n: int, mean: float, workers: int, price: float | None
) -> None:
    e = made_up(n, mean, workers, price)
    assert e.core_hours == pytest.approx(n * mean / 3600)
    assert e.wall_seconds == pytest.approx(max(n * mean / workers, mean))
    assert e.cost == (None if price is None else pytest.approx(e.core_hours * price))
    assert e.min_batch_seconds == 0 or e.min_batch_seconds <= 4.0
    assert e.timeout.endswith(("m", "h"))
    assert "Projected for" in str(e)


def test_suggestions_follow_the_leaf_time() -> None:
    assert made_up(10**6, 10.0, 100, None).min_batch_seconds == 0  # a leaf outweighs a task
    assert made_up(10**6, 0.001, 10, None).min_batch_seconds == 4  # batch to 4 s of work
    assert made_up(2_000, 0.001, 100, None).min_batch_seconds == 0.001  # 20 batches a worker
    assert made_up(10, 1.0, 1, None, top=5.0).timeout == "1m"
    assert made_up(10, 1.0, 1, None, top=110.0).timeout == "10m"  # 330 s -> the next step up
    assert made_up(10, 1.0, 1, None, top=20_000.0).timeout == "24h"
    assert made_up(10, 1.0, 1, None, top=50_000.0).timeout == "42h"
