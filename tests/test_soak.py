"""Soak: 10^5 leaves, 5% injected failures, worker processes killed at random.

Excluded from the default suite; run with `bash scripts/soak` (pytest -m soak).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time
from pathlib import Path

import psutil
import pytest

from scythe_oo import LocalEngine, LocalStore
from tests.support.counting import Soak, SoakInput, pool_workers

pytestmark = [pytest.mark.soak, pytest.mark.timeout(3600)]

N = int(os.environ.get("SCYTHE_SOAK_LEAVES", "100000"))


def test_soak_nothing_lost(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    fail = {i for i in range(N) if rng.random() < 0.05}
    specs = [SoakInput(i=i, fail=i in fail) for i in range(N)]
    started = time.monotonic()
    run = Soak.allocate(specs, store=LocalStore(root=tmp_path), engine=LocalEngine(max_workers=2))
    kills = 0
    assert run.handle is not None
    while not run.handle.join(rng.uniform(0.5, 3.0)):
        workers = pool_workers()
        if workers:
            with contextlib.suppress(psutil.Error):
                rng.choice(workers).send_signal(signal.SIGKILL)
                kills += 1
    run.wait()
    elapsed = time.monotonic() - started

    scalars = run.results.scalars()
    failures = run.failures()
    ok = scalars.index.get_level_values("sort_index")
    bad = failures.index.get_level_values("sort_index")
    counts = run.manifest().counts
    print(
        f"\nsoak: {N} leaves in {elapsed:.0f} s, {kills} worker kills, "
        f"succeeded={counts.succeeded} failed={counts.failed} injected={len(fail)} "
        f"crashed={int((failures['error_type'] == 'WorkerCrashed').sum())}"
    )
    assert sorted([*ok, *bad]) == list(range(N))  # every spec exactly once
    assert set(bad) >= fail  # every injected failure is reported
    lost_to_kills = set(bad) - fail
    assert all(
        failures.loc[
            failures.index.get_level_values("sort_index").isin(lost_to_kills), "error_type"
        ]
        == "WorkerCrashed"
    )
    assert (scalars["square"].to_numpy() == (ok.to_numpy() ** 2)).all()
