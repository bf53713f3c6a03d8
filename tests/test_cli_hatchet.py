"""The daily loop on the real Hatchet engine: a worker started by `scythe-oo worker`, a run
allocated, watched, inspected and retried from the shell, its leaves' logs streamed to the
store by the worker."""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from scythe_oo import ExperimentRun, HatchetEngine, LocalStore
from tests.support.cli import scythe, scythe_popen
from tests.support.counting import Counted, CountedInput, executions
from tests.support.daily import DailyInput
from tests.support.hatchet import WorkerProcess

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(600)]

EXPERIMENT = "tests.support.daily:Daily"


MANIFEST_READS: Counter[Path] = Counter()


class ManifestReads(LocalStore):
    """A local folder that counts reads of manifest.yml (each a GET of a run's wait on S3)."""

    def get_bytes(self, key: str) -> bytes:
        if key.endswith("/manifest.yml"):
            MANIFEST_READS[self.root] += 1
        return super().get_bytes(key)


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


def test_resume_from_the_shell_on_hatchet(
    tmp_path: Path,
    start_worker: Callable[..., WorkerProcess],
    hatchet_namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`scythe-oo resume` on a Hatchet run whose last leaf is stuck: the old engine run is
    cancelled, a new attempt runs only what the journal lacks, and it ends completed.

    A base node's first two leaves run alone (the probes) and are journaled at once; the
    others go out as one batch, journaled when the whole batch ends, and the last of them
    waits at a gate. So at the resume, leaves 0 and 1 are journaled and 2 to 5 are not."""
    monkeypatch.setenv("SCYTHE_JOURNAL_SECONDS", "0")
    worker = start_worker("resume-worker", modules=("tests.support.counting",))
    counter, gate = tmp_path / "count", tmp_path / "gate"
    counter.mkdir()
    specs = [
        CountedInput(i=i, counter_dir=str(counter), gate=str(gate) if i == 5 else "")
        for i in range(6)
    ]
    store = ManifestReads(root=tmp_path / "store")
    run = Counted.allocate(specs, store=store, engine=HatchetEngine())
    deadline = time.monotonic() + 180
    while run.progress().done < 2 or 5 not in executions(counter):
        assert time.monotonic() < deadline, (run.progress(), worker.log_tail())
        time.sleep(0.2)
    # A live run's progress reads its manifest once, not once more in the engine's handle.
    before = MANIFEST_READS[store.root]
    assert run.progress.state == "running"
    assert MANIFEST_READS[store.root] == before + 1
    old_run = run.manifest().engine_run_id
    assert old_run

    resumed = scythe_popen(
        "resume", run.uri, "--json", "--module", "tests.support.counting", cwd=tmp_path
    )
    try:
        follower = ExperimentRun.open(run.uri)
        while not follower.manifest().attempts or follower.manifest().engine_run_id in (
            None,
            old_run,
        ):
            assert resumed.poll() is None, [text[-600:] for text in resumed.communicate()]
            assert time.monotonic() < deadline + 120, worker.log_tail()
            time.sleep(0.2)
        gate.write_text("open")  # the new attempt's leaf 5 (and the old one's) may end now
        out, err = resumed.communicate(timeout=300)
    finally:
        if resumed.poll() is None:
            resumed.kill()
            resumed.wait(timeout=30)
    assert resumed.returncode == 0, err + worker.log_tail()
    found = json.loads(out)
    assert (found["status"], found["succeeded"], found["failed"]) == ("completed", 6, 0)
    manifest = ExperimentRun.open(run.uri).manifest()
    assert [a["reason"] for a in manifest.attempts] == ["resume"]
    assert manifest.engine_run_id not in (None, old_run)
    # Journaled leaves did not run again; the rest ran in both attempts, and nothing is lost.
    runs = executions(counter)
    assert (runs[0], runs[1]) == (1, 1), runs
    assert all(runs[i] >= 2 for i in (2, 3, 4, 5)), runs
    scalars = ExperimentRun.open(run.uri).results.scalars()
    assert sorted(scalars["square"]) == [i * i for i in range(6)]
