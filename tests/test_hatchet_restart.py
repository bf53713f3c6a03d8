"""The distributed engine never hangs silently (issue 12, part 6): when the Hatchet engine is
restarted mid-run, the run either completes by itself or is declared stalled within a bounded
time, and resume() then completes it with nothing lost and nothing that was journaled run
twice."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scythe_oo import HatchetEngine, LocalStore, RecursionPolicy, RunFailedError
from tests.support.hatchet import ROOT, WorkerProcess
from tests.support.hatchet_experiments import FinishingProbe, FinishingProbeInput, executions
from tests.support.invariants import account_for_everything

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(600)]

STALL_SECONDS = 30
RESTART = ["bash", str(ROOT / "scripts" / "hatchet-local"), "restart-engine", "5"]


def journaled(store: LocalStore, run_root: str) -> set[int]:
    """The specs whose outcome a leaf batch has journaled by now."""
    found: set[int] = set()
    for path in (store.root / run_root / "scatter-gather" / "journal").rglob("*.pq"):
        found.update(pq.read_table(path, columns=["sort_index"]).column(0).to_pylist())
    return found


def test_an_engine_restart_mid_run_loses_nothing(
    start_worker: Callable[..., WorkerProcess],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCYTHE_STALL_SECONDS", str(STALL_SECONDS))
    start_worker("restart", slots="4")
    counter, done = tmp_path / "count", tmp_path / "done"
    counter.mkdir()
    done.mkdir()
    n = 240
    specs = [
        FinishingProbeInput(i=i, counter_dir=str(counter), done_dir=str(done), seconds=0.1)
        for i in range(n)
    ]
    store = LocalStore(tmp_path / "store")
    run = FinishingProbe.allocate(
        specs,
        store=store,
        engine=HatchetEngine(split_above=0),
        recursion=RecursionPolicy(factor=4, max_depth=1),
    )
    deadline = time.monotonic() + 120
    while len(journaled(store, run.layout.root)) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        subprocess.run(RESTART, check=True, capture_output=True, timeout=180)
    finally:  # whatever happened, leave an engine up for the rest of the session
        subprocess.run(
            ["bash", str(ROOT / "scripts" / "hatchet-local"), "up"],
            capture_output=True,
            timeout=300,
        )
    before = journaled(store, run.layout.root)
    assert len(before) >= 20, "the restart came before any leaf was journaled"

    restarted = time.monotonic()
    try:
        run.wait(timeout=STALL_SECONDS + 240)
        outcome = "completed by itself"
    except RunFailedError as exc:
        # Declared stalled in bounded time, saying what happened and what to do.
        assert "no leaf of this run has finished" in str(exc) and "resume()" in str(exc)
        assert time.monotonic() - restarted < STALL_SECONDS + 200
        run = run.resume()
        run.wait(timeout=300)
        outcome = "stalled, then resumed"
    assert run.status == "completed", outcome
    account_for_everything(run, n)
    assert run.results.scalars()["square"].tolist() == [i * i for i in range(n)]
    runs = executions(counter)
    assert set(runs) == set(range(n))
    # A leaf journaled before the restart is never run again, by the engine or by resume.
    assert [i for i in sorted(before) if runs[i] > 1] == [], outcome
    print(f"\n{outcome}; {sum(runs.values()) - n} repeated executions; {len(before)} journaled")
