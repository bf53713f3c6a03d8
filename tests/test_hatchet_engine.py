"""The distributed engine against a real Hatchet engine, workers as subprocesses, S3 on moto."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hatchet_sdk.clients.rest.models.v1_task_status import V1TaskStatus

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample
from scythe_oo import (
    ExperimentRun,
    HatchetEngine,
    LocalEngine,
    LocalStore,
    RecursionPolicy,
    RunFailedError,
    S3Store,
)
from scythe_oo.engines.hatchet.client import hatchet_client
from scythe_oo.engines.hatchet.tasks import SCATTER_GATHER_TASK
from tests.support.counting import CountedInput, Crashy
from tests.support.counting import executions as counted
from tests.support.hatchet import WorkerProcess
from tests.support.hatchet_experiments import (
    FinishingProbe,
    FinishingProbeInput,
    HighMemoryProbe,
    Probe,
    ProbeInput,
    executions,
)
from tests.support.invariants import account_for_everything
from tests.test_example import comparable

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(300)]

StartWorker = Callable[..., WorkerProcess]


def test_example_on_hatchet_matches_local(start_worker: StartWorker, s3_store: S3Store) -> None:
    start_worker("both")
    specs = sample(40, seed=11)
    tree = RecursionPolicy(factor=3, max_depth=2)
    remote = SimulateEnergy.allocate(
        specs, store=s3_store, engine=HatchetEngine(split_above=0), recursion=tree
    )
    local = SimulateEnergy.allocate(
        specs, store=s3_store, engine=LocalEngine(max_workers=2, split_above=0), recursion=tree
    )
    local.wait(timeout=120)
    remote.wait(timeout=240)
    assert remote.status == "completed", remote.progress()
    assert remote.manifest().engine["kind"] == "hatchet"
    for name in ("scalars", "result_file_refs", "monthly", "failures"):
        pd.testing.assert_frame_equal(
            comparable(local.results.dataframe(name)), comparable(remote.results.dataframe(name))
        )
    account_for_everything(remote, 40)
    # the tree really had two levels: 3 children, 9 grandchildren
    nodes = {
        key.split("/scatter-gather/output/", 1)[1].rsplit("/", 1)[0]
        for key in s3_store.list_keys(remote.layout.key("scatter-gather", "output"))
        if key.endswith("_node.json")
    }
    assert len([n for n in nodes if n.count("/") == 2]) == 9

    # a new handle that knows only the URI follows the same run through Hatchet
    reopened = ExperimentRun.open(remote.uri)
    assert reopened.status == "completed"


def test_one_off_single_spec(start_worker: StartWorker, s3_store: S3Store) -> None:
    start_worker("both")
    run = Probe.allocate(ProbeInput(i=7), store=s3_store, engine=HatchetEngine()).wait(timeout=120)
    assert run.status == "completed"
    assert run.manifest().one_off
    assert run.results.scalars()["square"].tolist() == [49]


def test_a_leaf_that_kills_its_process_is_one_failure_row(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    """A worker runs its leaves in processes of its own: a leaf that segfaults takes down one
    of them, not the worker. The pool replaces the process, the batch is retried and then
    run spec by spec, and only the crashing spec ends as a failure row."""
    worker = start_worker("crashy", modules=("tests.support.counting",), slots="2")
    counter = tmp_path / "count"
    counter.mkdir()
    run = Crashy.allocate(
        [CountedInput(i=i, counter_dir=str(counter)) for i in range(12)],
        store=LocalStore(tmp_path / "store"),
        engine=HatchetEngine(),
    ).wait(timeout=240)
    assert run.status == "completed_with_failures", run.progress()
    account_for_everything(run, 12)
    failures = run.failures()
    assert failures.index.get_level_values("sort_index").tolist() == [5]
    assert "died" in failures["error_message"].iloc[0], failures.iloc[0].to_dict()
    scalars = run.results.scalars()
    assert (scalars["square"] == scalars.index.get_level_values("sort_index") ** 2).all()
    runs = counted(counter)
    assert all(runs[i] >= 1 for i in range(12))
    assert worker.proc is not None and worker.proc.poll() is None  # the worker lived on


# --------------------------------------------------------------------------- helpers (engine side)


def namespace_task_runs(
    namespace: str, since: dt.datetime, names: tuple[str, ...], page: int = 1000
) -> list[Any]:
    """Every task run of the tasks ``names`` in ``namespace`` created since ``since``, with
    payloads, read from the engine's REST API (filtered by workflow id on the server, so other
    namespaces' runs in the same window do not page through)."""
    client = hatchet_client()
    ids = [
        workflow.metadata.id
        for name in names
        for workflow in client.workflows.list(workflow_name=name, limit=100).rows or []
        if workflow.name == f"{namespace}{name}"
    ]
    assert ids, f"no workflow {names} registered in {namespace}"
    until = utc_now() + dt.timedelta(minutes=1)
    found: dict[str, Any] = {}
    offset = 0
    while True:
        listed = client.runs.list(
            since=since,
            until=until,
            only_tasks=True,
            include_payloads=True,
            workflow_ids=ids,
            offset=offset,
            limit=page,
        )
        found.update((row.metadata.id, row) for row in listed.rows)
        if len(listed.rows) < page:
            return list(found.values())
        offset += page


def leaf_runs(rows: list[Any], namespace: str, experiment: str) -> list[Any]:
    return [r for r in rows if r.workflow_name == f"{namespace}{experiment}"]


def leaf_indices(row: Any) -> list[int]:
    """The spec indices a leaf task run carried, from its input payload (a leaf task runs one
    spec or a batch of them)."""
    return [int(spec["i"]) for spec in row.input["input"]["specs"]]


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll ``condition`` until it holds; return the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{what}: not within {timeout}s")
        time.sleep(0.1)
    return time.monotonic() - start


def wait_or_explain(run: ExperimentRun, timeout: float, *workers: WorkerProcess) -> float:
    """``run.wait``; on a timeout or a failed run, fail with the progress and worker log tails.
    Returns the seconds waited."""
    began = time.monotonic()
    try:
        run.wait(timeout=timeout)
    except (TimeoutError, RunFailedError) as exc:
        logs = "\n".join(f"--- {w.name}:\n{w.log_tail(15)}" for w in workers)
        raise AssertionError(f"{exc}\nprogress: {run.progress()}\n{logs}") from exc
    return time.monotonic() - began


def utc_now() -> dt.datetime:
    return dt.datetime.now(tz=dt.UTC)


# --------------------------------------------------------------------------- fault tolerance


def test_worker_killed_mid_run_is_replaced(
    start_worker: StartWorker,
    s3_store: S3Store,
    hatchet_namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Journal outcomes as soon as they arrive, so the kill always lands after the nodes have
    # journaled some leaves (what any node older than SCYTHE_JOURNAL_SECONDS has done).
    monkeypatch.setenv("SCYTHE_JOURNAL_SECONDS", "0")
    started, done = tmp_path / "started", tmp_path / "done"
    started.mkdir()
    done.mkdir()
    slots = 2
    n = 40
    since = utc_now() - dt.timedelta(seconds=5)
    w1 = start_worker("w1", slots=str(slots))
    specs = [
        FinishingProbeInput(i=i, counter_dir=str(started), done_dir=str(done), seconds=0.5)
        for i in range(n)
    ]
    run = FinishingProbe.allocate(
        specs,
        store=s3_store,
        engine=HatchetEngine(split_above=0),
        recursion=RecursionPolicy(factor=4, max_depth=1),
    )
    wait_until(lambda: len(list(started.iterdir())) >= 10, 90, "10 leaves started on w1")

    # What the engine has recorded as finished (its listing lags a little), read just before
    # the kill: the specs of every leaf task run Hatchet holds as COMPLETED.
    finished: set[int] = set()

    def some_completed() -> bool:
        rows = namespace_task_runs(hatchet_namespace, since, (FinishingProbe.name,))
        finished.update(
            i for r in rows if r.status == V1TaskStatus.COMPLETED for i in leaf_indices(r)
        )
        return len(finished) >= 4

    wait_until(some_completed, 60, "4 leaves completed in Hatchet")
    w1.kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    started_before_kill = executions(started)
    done_before_kill = executions(done)
    assert len(started_before_kill) < n, "the run was (nearly) over before the kill"
    w2 = start_worker("w2", slots=str(slots))

    wait_or_explain(run, 120, w1, w2)
    recovered = time.monotonic() - killed_at
    counts = executions(started)
    twice = {i: c for i, c in counts.items() if c > 1}
    reruns = [
        p.stat().st_mtime - killed_wall
        for p in started.iterdir()
        if int(p.name.split("-", 1)[0]) in twice and p.stat().st_mtime > killed_wall
    ]
    print(
        f"\nkilled w1 after {sum(started_before_kill.values())} starts "
        f"({len(finished)} leaves completed in Hatchet, {len(done_before_kill)} done markers); "
        f"in-flight leaves re-ran {sorted(round(t, 1) for t in reruns)}s after the kill; "
        f"run completed {recovered:.1f}s after the kill"
    )

    assert run.status == "completed", run.progress()
    account_for_everything(run, n)
    scalars = run.results.scalars().reset_index()
    assert sorted(scalars["sort_index"]) == list(range(n))
    assert (scalars["square"] == scalars["sort_index"] ** 2).all()
    assert set(scalars["worker"]) <= {"w1", "w2"}
    assert "w2" in set(scalars["worker"]), "the replacement worker ran nothing"

    # The snapshot is real: every spec of a Hatchet-completed leaf task had returned from run().
    assert finished <= set(done_before_kill)
    assert set(counts) == set(range(n))
    assert set(executions(done)) == set(range(n))
    # No leaf that had finished before the kill ran again...
    assert {i: counts[i] for i in finished if counts[i] != 1} == {}
    # ...only leaves in flight at the kill ran twice, and those belong to at most one leaf
    # task (a spec or a batch of specs) per slot of the dead worker.
    assert set(twice) <= set(started_before_kill) - finished
    assert max(twice.values(), default=1) <= 2, twice
    rows = namespace_task_runs(hatchet_namespace, since, (FinishingProbe.name,))
    in_flight = {
        max(
            (r for r in rows if i in leaf_indices(r)), key=lambda r: len(leaf_indices(r))
        ).metadata.id
        for i in twice
    }
    assert len(in_flight) <= slots, (twice, in_flight)


# --------------------------------------------------------------------------- routing and roles


def test_labels_route_leaves(start_worker: StartWorker, s3_store: S3Store) -> None:
    general = start_worker("general", slots="4")
    bigmem = start_worker("bigmem", slots="4", does_fan="false", high_memory="true")
    big = HighMemoryProbe.allocate(
        [ProbeInput(i=i, seconds=0.2) for i in range(12)], store=s3_store, engine=HatchetEngine()
    )
    plain = Probe.allocate(
        [ProbeInput(i=i, seconds=0.2) for i in range(12)], store=s3_store, engine=HatchetEngine()
    )
    wait_or_explain(big, 120, general, bigmem)
    wait_or_explain(plain, 60, general, bigmem)
    for run in (big, plain):
        assert run.status == "completed", run.progress()
        account_for_everything(run, 12)
        scalars = run.results.scalars()
        assert (scalars["square"] == scalars.index.get_level_values("sort_index") ** 2).all()
    assert set(big.results.scalars()["worker"]) == {"bigmem"}
    assert set(plain.results.scalars()["worker"]) <= {"general", "bigmem"}


def test_fan_and_leaf_roles_split(
    start_worker: StartWorker, s3_store: S3Store, tmp_path: Path
) -> None:
    """A fan-only worker runs nodes but no leaf: the run waits for a leaf worker."""
    counter = tmp_path / "started"
    counter.mkdir()
    fan = start_worker("fan", does_leaf="false")
    run = Probe.allocate(
        [ProbeInput(i=i, counter_dir=str(counter)) for i in range(8)],
        store=s3_store,
        engine=HatchetEngine(),
    )
    time.sleep(10)
    assert run.status == "running"  # the root node runs; its leaves have nowhere to go
    assert list(counter.iterdir()) == []
    leaf = start_worker("leaf", does_fan="false")
    wait_or_explain(run, 60, fan, leaf)
    assert run.status == "completed", run.progress()
    account_for_everything(run, 8)
    assert set(run.results.scalars()["worker"]) == {"leaf"}
    assert executions(counter) == dict.fromkeys(range(8), 1)


def test_leaf_only_worker_runs_no_node(
    start_worker: StartWorker, s3_store: S3Store, tmp_path: Path
) -> None:
    """A leaf-only worker runs no node: the run stays queued until a fan worker comes."""
    counter = tmp_path / "started"
    counter.mkdir()
    leaf = start_worker("leaf", does_fan="false")
    run = Probe.allocate(
        [ProbeInput(i=i, counter_dir=str(counter)) for i in range(8)],
        store=s3_store,
        engine=HatchetEngine(),
    )
    time.sleep(10)
    assert run.status == "queued"
    assert run.manifest().status == "queued"  # no node ever marked it running
    assert list(counter.iterdir()) == []
    fan = start_worker("fan", does_leaf="false")
    wait_or_explain(run, 60, fan, leaf)
    assert run.status == "completed", run.progress()
    account_for_everything(run, 8)
    assert set(run.results.scalars()["worker"]) == {"leaf"}
    assert executions(counter) == dict.fromkeys(range(8), 1)


# --------------------------------------------------------------------------- scale


def test_thousand_leaves_payloads_stay_small(
    start_worker: StartWorker, s3_store: S3Store, hatchet_namespace: str, tmp_path: Path
) -> None:
    n = 1000
    counter = tmp_path / "started"
    counter.mkdir()
    workers = [start_worker("big1", slots="8"), start_worker("big2", slots="8")]
    since = utc_now() - dt.timedelta(seconds=5)
    began = time.monotonic()
    run = Probe.allocate(
        [ProbeInput(i=i, counter_dir=str(counter)) for i in range(n)],
        store=s3_store,
        engine=HatchetEngine(split_above=0),
        recursion=RecursionPolicy(factor=10, max_depth=1),
    )
    wait_or_explain(run, 200, *workers)
    elapsed = time.monotonic() - began
    print(f"\n{n} leaves in {elapsed:.1f}s: {n / elapsed:.1f} leaves/s, allocate to completed")
    assert run.status == "completed", run.progress()
    account_for_everything(run, n)
    scalars = run.results.scalars()
    assert (scalars["square"] == scalars.index.get_level_values("sort_index") ** 2).all()
    assert executions(counter) == dict.fromkeys(range(n), 1)

    # Measure what went through the engine: every task run of this test, node and leaf. Leaves
    # may travel one per task or in batches; either way every spec must be seen in a payload.
    # The engine's run listing is eventually consistent: poll it (bounded) until it caught up.
    rows: list[Any] = []

    def listed_everything() -> bool:
        rows[:] = namespace_task_runs(hatchet_namespace, since, (Probe.name, SCATTER_GATHER_TASK))
        done = [r for r in rows if r.status == V1TaskStatus.COMPLETED]
        leaves = leaf_runs(done, hatchet_namespace, Probe.name)
        carried = {i for r in leaves for i in leaf_indices(r)}
        return len(carried) >= n and len(done) - len(leaves) >= 11

    try:
        lag = wait_until(listed_everything, 60, "the engine lists every task run")
    except TimeoutError:
        lag = float("nan")  # the assertions below say what is missing
    leaves = leaf_runs(rows, hatchet_namespace, Probe.name)
    nodes = leaf_runs(rows, hatchet_namespace, SCATTER_GATHER_TASK)
    assert sorted(i for r in leaves for i in leaf_indices(r)) == list(range(n))
    assert len(nodes) == 11  # the root and its 10 children
    assert all(r.status == V1TaskStatus.COMPLETED for r in leaves + nodes)
    assert not any(r.payloads_restricted for r in rows)
    sizes = {
        kind: (
            max(len(json.dumps(r.input)) for r in group),
            max(len(json.dumps(r.output)) for r in group),
        )
        for kind, group in (("leaf", leaves), ("node", nodes))
    }
    span = max(r.finished_at for r in leaves) - min(r.created_at for r in leaves)
    print(
        f"max payload bytes (input, output): leaf {sizes['leaf']}, node {sizes['node']}; "
        f"{len(leaves)} leaf + {len(nodes)} node task runs measured (listing caught up "
        f"{lag:.1f}s after completion); leaf tasks created->finished in "
        f"{span.total_seconds():.1f}s"
    )
    for kind, (largest_input, largest_output) in sizes.items():
        assert largest_input < 64 * 1024, (kind, largest_input)
        assert largest_output < 64 * 1024, (kind, largest_output)
