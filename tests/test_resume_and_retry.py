"""Nothing lost, nothing paid twice: retry_failed and resume after a killed driver."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import attrs
import psutil
import pytest

from scythe_oo import ExperimentRun, LocalEngine, LocalStore
from scythe_oo.engines.local_dispatch import SPLIT_WAYS
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import ManifestFile
from scythe_oo.tree import base_node
from scythe_oo.tree.journal import LeafJournal
from tests.support.counting import (
    Counted,
    CountedInput,
    Crashy,
    KilledFromOutside,
    executions,
    pool_workers,
)
from tests.support.invariants import account_for_everything

pytestmark = pytest.mark.timeout(180)


@pytest.mark.parametrize("shape", ["tree", "one-node", "windows"])
def test_retry_failed_reruns_only_failures(
    tmp_path: Path, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same on every shape of tree: children, one base node, and one base node that runs
    its specs a window at a time (so one node's failures span several windows)."""
    if shape == "windows":
        monkeypatch.setattr(base_node, "WINDOW_ROWS", 7)
    engine = LocalEngine(max_workers=2, split_above=0 if shape == "tree" else 1_000_000)
    counter = tmp_path / "count"
    counter.mkdir()
    flag = tmp_path / "flag"
    store = LocalStore(root=tmp_path / "store")
    specs = [
        CountedInput(i=i, counter_dir=str(counter), fail_until_generation_flag=str(flag))
        for i in range(30)
    ]
    run = Counted.allocate(specs, store=store, engine=engine).wait(timeout=60)
    assert run.status == "completed_with_failures"
    failed = sorted(run.failures().index.get_level_values("sort_index"))
    assert failed == [i for i in range(30) if i % 3 == 0]
    account_for_everything(run, 30)
    assert executions(counter) == {i: 1 for i in range(30)}
    # Windows append to the node's tables: no parts to merge, nothing staged left over.
    assert not (store.root / run.layout.node_output_prefix("root") / "parts").exists()
    assert list(store.root.rglob("*.tmp")) == []

    flag.write_text("fixed")
    retried = run.retry_failed(engine=engine).wait(timeout=60)
    assert retried.uri == run.uri
    assert retried.status == "completed"
    account_for_everything(retried, 30)
    assert retried.failures().empty
    assert retried.results.scalars()["square"].tolist() == [i * i for i in range(30)]
    counts = executions(counter)
    assert {i for i, c in counts.items() if c == 2} == set(failed)  # only failures ran again
    assert all(c == 1 for i, c in counts.items() if i not in failed)
    manifest = retried.manifest()
    assert manifest.generation == 2
    assert manifest.counts.succeeded == 30 and manifest.counts.failed == 0
    assert [a["reason"] for a in manifest.attempts] == ["retry_failed"]
    assert manifest.attempts[0]["previous_counts"]["failed"] == len(failed)


DRIVER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from tests.support.counting import Counted, CountedInput
    from scythe_oo import LocalEngine, LocalStore

    store = LocalStore(root=sys.argv[1])
    counter = sys.argv[2]
    specs = [CountedInput(i=i, counter_dir=counter, seconds=0.15) for i in range(60)]
    run = Counted.allocate(specs, store=store, engine=LocalEngine(max_workers=2, split_above=0))
    print(run.uri, flush=True)
    run.wait()
    """
)


def test_a_restart_forgets_the_old_attempts_engine_run(tmp_path: Path) -> None:
    """Between a restart and the new engine naming its run, the manifest names no engine
    run: a follower that attached to the old one (cancelled by the restart) would record
    that run's end as the new attempt's failure."""
    store = LocalStore(root=tmp_path / "store")
    counter = tmp_path / "count"
    counter.mkdir()
    specs = [CountedInput(i=i, counter_dir=str(counter)) for i in range(3)]
    run = Counted.allocate(specs, store=store, engine=LocalEngine(max_workers=1)).wait(timeout=60)
    folder = ManifestFile(store, run.layout)
    on_hatchet = folder.write(
        folder.read().evolve(engine={"kind": "hatchet"}, engine_run_id="the-old-hatchet-run")
    )
    restarted = folder.restarted(
        on_hatchet, reason="resume", generation=1, engine={"kind": "hatchet"}
    )
    assert restarted.engine_run_id is None
    assert folder.read().engine_run_id is None
    assert folder.read().attempts[-1]["reason"] == "resume"


def test_kill_driver_then_resume(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    counter.mkdir()
    store_root = tmp_path / "store"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "SCYTHE_JOURNAL_SECONDS": "0",
    }
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(store_root), str(counter)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert driver.stdout is not None
    uri = driver.stdout.readline().strip()
    deadline = time.monotonic() + 60
    while len(list(counter.iterdir())) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=10)
    time.sleep(1.5)  # the pool workers notice their parent is gone and exit

    run = ExperimentRun.open(uri)
    assert run.status == "interrupted"
    layout = RunLayout.from_experiment_id(run.experiment_id)
    store = LocalStore(root=store_root)
    persisted: set[int] = set()
    for node in ("root/0", "root/1", "root/2", "root/3"):
        journal = LeafJournal(store, layout, node, Counted.schema)
        persisted |= set(journal.settled().column("sort_index").to_pylist())
    assert persisted, "some leaves should have been journaled before the kill"
    before = executions(counter)
    assert len(before) < 60, "the driver was killed too late to test anything"

    resumed = Counted.resume(uri, engine=LocalEngine(max_workers=2, split_above=0))
    resumed.wait(timeout=120)
    assert resumed.status == "completed"
    account_for_everything(resumed, 60)
    assert resumed.results.scalars()["square"].tolist() == [i * i for i in range(60)]
    after = executions(counter)
    assert set(after) == set(range(60))
    for index in persisted:
        assert after[index] == 1, f"leaf {index} was persisted but ran again"
    # only leaves in flight at the kill (4 lanes) or already queued to the orphaned workers
    # before they noticed (pool queue: workers + 1) may have run twice
    assert sum(after.values()) - 60 <= 4 + 3
    assert [a["reason"] for a in resumed.manifest().attempts] == ["resume"]


def test_resume_refuses_a_live_run(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    counter.mkdir()
    specs = [CountedInput(i=i, counter_dir=str(counter), seconds=0.2) for i in range(8)]
    run = Counted.allocate(specs, store=LocalStore(root=tmp_path / "s"))
    with pytest.raises(RuntimeError, match="still"):
        ExperimentRun.open(run.uri).resume()
    run.wait(timeout=60)
    assert run.resume() is run  # a finished run is returned as it is


def test_a_leaf_that_kills_its_worker_becomes_a_failure_row(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    counter.mkdir()
    specs = [CountedInput(i=i, counter_dir=str(counter)) for i in range(12)]
    run = Crashy.allocate(
        specs,
        store=LocalStore(root=tmp_path / "s"),
        engine=LocalEngine(max_workers=2, split_above=0),
    )
    run.wait(timeout=120)
    assert run.status == "completed_with_failures"
    account_for_everything(run, 12)
    failures = run.failures()
    assert failures.index.get_level_values("sort_index").tolist() == [5]
    assert failures["error_type"].tolist() == ["WorkerCrashed"]
    assert "SIGSEGV" in failures["error_message"].iloc[0]
    # once beside others (not blamed), then alone: a try and its one retry
    assert failures["attempts"].tolist() == [3]
    assert executions(counter)[5] == 3


def test_a_worker_killed_from_outside_does_not_count_against_its_leaf(tmp_path: Path) -> None:
    """SIGKILL from someone else is not the leaf's fault: the leaf runs again, past its
    retries, and only after OUTSIDE_KILLS kills is it reported, as WorkerKilled."""
    counter = tmp_path / "count"
    counter.mkdir()
    specs = [CountedInput(i=i, counter_dir=str(counter)) for i in range(8)]
    run = KilledFromOutside.allocate(
        specs,
        store=LocalStore(root=tmp_path / "s"),
        engine=LocalEngine(max_workers=2, split_above=0),
    ).wait(timeout=120)
    account_for_everything(run, 8)
    failures = run.failures()
    assert failures["error_type"].tolist() == ["WorkerKilled"]
    assert (
        "killed from outside 5 times (it was killed from outside (SIGKILL))"
        in (failures["error_message"].iloc[0])
    )
    assert executions(counter)[5] == 6  # once beside others, then 5 times alone


def test_specs_running_beside_a_crashing_one_are_not_blamed(tmp_path: Path) -> None:
    """Spec 5 takes the whole pool down each time it runs, killing whatever ran beside it.
    The bystanders must be run again until they succeed, not reported as crashed."""
    counter = tmp_path / "count"
    counter.mkdir()
    specs = [
        CountedInput(i=i, counter_dir=str(counter), seconds=0.1 if i == 5 else 0.5)
        for i in range(8)
    ]
    run = Crashy.allocate(
        specs,
        store=LocalStore(root=tmp_path / "s"),
        engine=LocalEngine(max_workers=2, split_above=0),
    )
    run.wait(timeout=120)
    account_for_everything(run, 8)
    assert run.failures().index.get_level_values("sort_index").tolist() == [5]
    assert run.results.scalars()["square"].tolist() == [i * i for i in range(8) if i != 5]
    assert executions(counter)[5] == 3


def test_a_crash_inside_a_big_batch_is_narrowed_down_in_parts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Tiny leaves run in big batches; when spec 5 kills its process, its batch is split in
    SPLIT_WAYS parts, and only the part that dies again is split further, until spec 5 runs
    alone: a few pool round trips, not one per spec of the batch."""
    caplog.set_level(logging.INFO, logger="scythe_oo.engines.local_dispatch")
    counter = tmp_path / "count"
    counter.mkdir()
    n = 2_000
    specs = [CountedInput(i=i, counter_dir=str(counter)) for i in range(n)]
    run = Crashy.allocate(
        specs,
        store=LocalStore(root=tmp_path / "s"),
        engine=LocalEngine(max_workers=2, split_above=0, min_batch_seconds=5.0),
    ).wait(timeout=300)
    account_for_everything(run, n)
    failures = run.failures()
    assert failures.index.get_level_values("sort_index").tolist() == [5]
    assert failures["error_type"].tolist() == ["WorkerCrashed"]
    assert failures["attempts"].tolist() == [3]  # once beside others, then twice alone
    sizes = [
        int(r.getMessage().split("batch of ")[1].split()[0])
        for r in caplog.records
        if "died under a batch of" in r.getMessage()
    ]
    assert sizes, "spec 5 never ran in a batch of more than one spec"
    # each split is at most an eighth of the batch before it, down to two specs
    assert all(b <= -(-a // SPLIT_WAYS) for a, b in itertools.pairwise(sizes)), sizes
    assert len(sizes) <= 1 + math.ceil(math.log(n, SPLIT_WAYS))
    ran = executions(counter)
    assert set(ran) == set(range(n))
    # a spec reruns only with the parts it shared with spec 5, or with a broken neighbour
    assert max(count for i, count in ran.items() if i != 5) <= len(sizes) + 1 + 1


def test_workers_killed_from_outside_are_replaced(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    counter.mkdir()
    specs = [CountedInput(i=i, counter_dir=str(counter), seconds=0.05) for i in range(80)]
    run = Counted.allocate(
        specs,
        store=LocalStore(root=tmp_path / "s"),
        engine=LocalEngine(max_workers=2, split_above=0),
    )
    killed = 0
    deadline = time.monotonic() + 30
    while killed < 3 and time.monotonic() < deadline:
        time.sleep(0.4)
        workers = pool_workers()
        if workers and not run.handle.join(0):  # type: ignore[union-attr]
            with contextlib.suppress(psutil.Error):
                workers[-1].send_signal(signal.SIGKILL)
                killed += 1
    run.wait(timeout=120)
    assert killed >= 1
    assert run.status == "completed"
    account_for_everything(run, 80)
    assert run.results.scalars()["square"].tolist() == [i * i for i in range(80)]


FAILING_DRIVER = DRIVER.replace(
    "CountedInput(i=i, counter_dir=counter, seconds=0.15)",
    "CountedInput(i=i, counter_dir=counter, seconds=0.15, fail_until_generation_flag=sys.argv[3],"
    " fail_below=8)",
)


def test_retry_after_a_crash_and_a_resume_reruns_only_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, part 3: crash the driver, resume (ending with failures), then retry_failed.
    The failing specs come first, so they failed (and were journaled) before the crash and
    the resume itself only succeeds; its successes must be journaled all the same, or the
    retry runs them again."""
    counter, flag = tmp_path / "count", tmp_path / "flag"
    counter.mkdir()
    store_root = tmp_path / "store"
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parent.parent),
        "SCYTHE_JOURNAL_SECONDS": "0",
    }
    driver = subprocess.Popen(
        [sys.executable, "-c", FAILING_DRIVER, str(store_root), str(counter), str(flag)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert driver.stdout is not None
    uri = driver.stdout.readline().strip()
    deadline = time.monotonic() + 60
    while len(list(counter.iterdir())) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=10)
    time.sleep(1.5)  # the pool workers notice their parent is gone and exit

    # The resumed run journals nothing by time (the bound is a minute away), so only the
    # rule "a node with failures journals everything" keeps its successes.
    monkeypatch.setenv("SCYTHE_JOURNAL_SECONDS", "60")
    engine = LocalEngine(max_workers=2, split_above=0)
    resumed = Counted.resume(uri, engine=engine).wait(timeout=120)
    assert resumed.status == "completed_with_failures"
    account_for_everything(resumed, 60)
    before = executions(counter)

    retried = resumed.retry_failed(engine=engine).wait(timeout=120)
    account_for_everything(retried, 60)
    after = executions(counter)
    rerun = sorted(i for i in after if after[i] > before.get(i, 0))
    assert rerun == list(range(8))  # the failures, and only them


STORE_BROKEN = threading.Event()


@attrs.frozen
class BreakableStore(LocalStore):
    """A local folder whose writes fail while STORE_BROKEN is set: a disk that went read-only
    and was repaired (file permissions cannot do it: the tests may run as root)."""

    def put_bytes(self, key: str, data: bytes) -> str:
        if STORE_BROKEN.is_set():
            raise OSError(30, "Read-only file system", str(self.path_of(key)))
        return super().put_bytes(key, data)


def test_a_run_whose_store_broke_resumes_in_the_same_process(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    counter.mkdir()
    store = BreakableStore(tmp_path / "store")
    specs = [CountedInput(i=i, counter_dir=str(counter), seconds=0.05) for i in range(40)]
    engine = LocalEngine(max_workers=2, split_above=0)
    run = Counted.allocate(specs, store=store, engine=engine)
    deadline = time.monotonic() + 60
    while len(list(counter.iterdir())) < 10 and time.monotonic() < deadline:
        time.sleep(0.02)
    STORE_BROKEN.set()
    try:
        assert run.handle is not None and run.handle.join(60), "the run should stop"
    finally:
        STORE_BROKEN.clear()  # repaired
    # Its thread is gone; the manifest could not even record the failure.
    assert run.status in ("interrupted", "failed")
    resumed = run.resume(engine=engine).wait(timeout=120)
    assert resumed.status == "completed"
    account_for_everything(resumed, 40)
