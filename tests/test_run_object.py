"""One run is one object per folder: every ExperimentRun of a folder follows its latest attempt;
it can be awaited; it prints readably; and runs of several versions stack into one table."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pandas as pd
import pytest

from scythe_oo import ExperimentRun, LocalEngine, LocalStore
from tests.support.daily import Daily, specs

pytestmark = pytest.mark.timeout(180)


def test_retry_on_one_object_is_followed_by_every_object_of_the_folder(tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    store = LocalStore(root=tmp_path / "store")
    engine = LocalEngine(max_workers=2)
    run = Daily.allocate(
        specs(9, fails_every_third=True, fixed_flag=str(flag)), store=store, engine=engine
    )
    other = ExperimentRun.open(run.uri)
    assert run.wait(timeout=120, progress=False) is run
    assert run.status == other.status == "completed_with_failures"
    assert len(run.results.scalars()) == 6

    flag.write_text("fixed")
    returned = run.retry_failed(engine=engine)
    assert returned is run  # the same object follows the new attempt
    other.wait(timeout=120, progress=False)  # waits for the retry, not for the old attempt
    assert other.status == "completed"
    assert len(other.results.scalars()) == 9
    assert other.failures().empty
    run.wait(timeout=120, progress=False)
    assert run.progress.done == 9 and run.progress.failed == 0
    assert run.progress() == run.progress  # code written for the old method still works


def test_a_retry_started_by_another_object_is_followed_by_a_stale_one(tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    store = LocalStore(root=tmp_path / "store")
    engine = LocalEngine(max_workers=2)
    run = Daily.allocate(
        specs(6, fails_every_third=True, fixed_flag=str(flag)), store=store, engine=engine
    ).wait(timeout=120, progress=False)
    stale = ExperimentRun.open(run.uri)
    assert stale.status == "completed_with_failures"
    flag.write_text("fixed")
    ExperimentRun.open(run.uri).retry_failed(engine=engine)
    stale.wait(timeout=120, progress=False)
    assert stale.status == "completed"
    assert stale.results.scalars()["square"].notna().sum() == 6


def test_runs_can_be_awaited(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    engine = LocalEngine(max_workers=2)

    async def both() -> list[ExperimentRun]:
        first = Daily.allocate(specs(4), store=store, engine=engine)
        second = Daily.allocate(specs(5), store=store, engine=engine)
        ticks = 0

        async def count_ticks() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticker = asyncio.create_task(count_ticks())
        done = await asyncio.gather(first.wait_async(progress=False), second)
        ticker.cancel()
        assert ticks > 0  # the loop stayed free while the runs went on
        return done

    first, second = asyncio.run(both())
    assert first.status == second.status == "completed"
    assert len(first.results.scalars()) == 4 and len(second.results.scalars()) == 5


def test_a_run_prints_what_a_researcher_asks_next(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    run = Daily.allocate(specs(3), store=store, engine=LocalEngine(max_workers=1))
    run.wait(timeout=120, progress=False)
    text = repr(run)
    assert text.startswith(f"ExperimentRun(daily {run.version} ")
    assert "completed, 3 done, 0 failed of 3" in text and run.uri in text
    page = run._repr_html_()
    assert "<table>" in page and "completed" in page and run.uri in page
    assert "first 3 rows" in page and "square" in page
    assert str(run.progress) == "completed: 3/3 (3 done, 0 failed)"
    details = run.details()
    assert (details["status"], details["succeeded"], details["total"]) == ("completed", 3, 3)
    assert (details["engine"], details["uri"], details["attempts"]) == ("local", run.uri, [])
    gone = ExperimentRun.open(run.uri)
    (tmp_path / "store").rename(tmp_path / "moved")
    assert repr(gone) == f"ExperimentRun({run.uri!r})"  # an unreadable store never raises


def test_results_across_versions_stack_with_a_version_level(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    engine = LocalEngine(max_workers=2)
    first = Daily.allocate(specs(3), store=store, engine=engine).wait(progress=False)
    second = Daily.allocate(specs(4), store=store, engine=engine).wait(progress=False)
    assert (str(first.version), str(second.version)) == ("v1.0.0", "v1.1.0")
    both = Daily.results(store=store)
    assert both.index.names[0] == "version"
    assert list(both.index.get_level_values("version").unique()) == ["v1.0.0", "v1.1.0"]
    assert len(both) == 7
    pd.testing.assert_frame_equal(both.xs("v1.1.0"), second.results.scalars())
    only = Daily.results(["v1.0.0"], table="pairs", store=store)
    assert len(only) == 6 and set(only.index.get_level_values("version")) == {"v1.0.0"}
    with pytest.raises(LookupError, match=r"no finished run of v9\.0\.0; finished versions"):
        Daily.results("v9.0.0", store=store)
