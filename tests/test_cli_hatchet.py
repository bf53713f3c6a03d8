"""The daily loop on the real Hatchet engine: a worker started by `scythe-oo worker`, a run
allocated, watched, inspected and retried from the shell, its leaves' logs streamed to the
store by the worker."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from scythe_oo import ExperimentRun
from tests.support.cli import scythe, scythe_popen
from tests.support.daily import DailyInput
from tests.support.hatchet import WorkerProcess

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(600)]

EXPERIMENT = "tests.support.daily:Daily"


def test_the_daily_loop_on_hatchet(
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    hatchet_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SCYTHE_JOURNAL_SECONDS", "0")  # the worker journals every leaf at once
    worker = start_worker("daily-worker", modules=("tests.support.daily",))
    gate, flag = tmp_path / "gate", tmp_path / "fixed"
    rows = [
        DailyInput(i=i, fails=i % 3 == 0, fixed_flag=str(flag), gate=str(gate) if i == 4 else "")
        for i in range(6)
    ]
    pd.DataFrame([r.model_dump(exclude=set(DailyInput.BOOKKEEPING_FIELDS)) for r in rows]).to_csv(
        tmp_path / "specs.csv", index=False
    )
    store = str(tmp_path / "store")
    driver = scythe_popen(
        "allocate", EXPERIMENT, "specs.csv", "--engine", "hatchet", "--store", store, cwd=tmp_path
    )
    watcher = None
    try:
        assert driver.stdout is not None
        uri = driver.stdout.readline().strip()
        run = ExperimentRun.open(uri)
        deadline = time.monotonic() + 180
        while "leaf 4 says line 1" not in run.logs(4):  # written by the worker, as it ran
            assert time.monotonic() < deadline, worker.log_tail()
            time.sleep(0.1)
        assert "passed the gate" not in run.logs(4)

        watcher = scythe_popen("status", uri, "--watch", cwd=tmp_path)
        assert watcher.stderr is not None
        line = watcher.stderr.readline()
        assert line.startswith("daily v1.0.0: running, "), line
        # Leaf 4 waits at the gate; the leaves that ended show, from the worker's journal.
        while not re.match(r"daily v1\.0\.0: running, [1-5]/6 ", line):
            line = watcher.stderr.readline()
            assert line.startswith("daily v1.0.0: running, "), line
        gate.write_text("open")
        out, err = watcher.communicate(timeout=300)
        assert watcher.returncode == 1, err  # it ended, but with failed leaves
        assert "status     completed_with_failures" in out
        assert "engine     hatchet" in out
        driven, driven_err = driver.communicate(timeout=300)
        assert driver.returncode == 1, driven_err
        assert driven.splitlines()[-1] == f"completed_with_failures: {uri}"
        assert "daily v1.0.0: completed_with_failures, 4 done, 2 failed of 6" in driven_err
    finally:
        for process in (driver, watcher):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    failures = scythe("failures", uri, "--json", cwd=tmp_path).json()
    assert [f["sort_index"] for f in failures] == [0, 3]
    assert all("says line 1" in f["log_tail"] for f in failures)
    assert "passed the gate" in scythe("logs", uri, "4", cwd=tmp_path).out

    flag.write_text("fixed")
    retried = scythe("retry", uri, "--json", cwd=tmp_path)
    assert retried.code == 0, retried.err + worker.log_tail()
    found = retried.json()
    assert (found["status"], found["succeeded"], found["engine"]) == ("completed", 6, "hatchet")
    runs = scythe("runs", "--store", store, "--json", cwd=tmp_path).json()
    assert [(r["status"], r["engine"]) for r in runs] == [("completed", "hatchet")]

    replayed = scythe("replay", uri, "3", "--json", cwd=tmp_path)  # here, not on the worker
    assert replayed.code == 0 and replayed.json()["scalars"]["square"] == 3.0
