"""Batches of tiny leaves on Hatchet: they name rows of their node's specs file.

A batch runs for a few seconds, which for tiny leaves is far more specs than a task payload
should carry; such a batch carries row runs instead, its process reads the rows, and its
outcomes come back as the key of the journal file it wrote. These tests run that path against
a real engine, and the one a crashing spec takes through it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hatchet_sdk.clients.rest.models.v1_task_status import V1TaskStatus

from scythe_oo import HatchetEngine, LocalStore, RecursionPolicy, S3Store
from scythe_oo.engines.hatchet.dispatcher import INLINE_SPECS
from scythe_oo.runfolder.specs import SPEC_COLUMN
from tests.support.counting import CountedInput, Crashy
from tests.support.counting import executions as counted
from tests.support.hatchet_experiments import Probe, ProbeInput, RowsProbe
from tests.support.invariants import account_for_everything
from tests.test_hatchet_engine import (
    StartWorker,
    leaf_runs,
    namespace_task_runs,
    utc_now,
    wait_or_explain,
    wait_until,
)

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(300)]


def _carried(run: Any) -> int:
    """How many specs a leaf task run carried, inline or as row runs."""
    payload = run.input["input"]
    return len(payload.get("specs") or []) + sum(b - a for a, b in payload.get("rows") or [])


def test_tiny_leaves_travel_as_row_ranges(
    start_worker: StartWorker, s3_store: S3Store, hatchet_namespace: str
) -> None:
    n = 3000
    workers = [start_worker("rows", slots="4")]
    since = utc_now() - dt.timedelta(seconds=5)
    run = RowsProbe.allocate(
        [ProbeInput(i=i) for i in range(n)],
        store=s3_store,
        engine=HatchetEngine(split_above=0),
        recursion=RecursionPolicy(factor=3, max_depth=1),
    )
    wait_or_explain(run, 180, *workers)
    assert run.status == "completed", run.progress()
    account_for_everything(run, n)
    scalars = run.results.scalars()
    assert (scalars["square"] == scalars.index.get_level_values("sort_index") ** 2).all()

    rows: list[Any] = []

    def listed() -> bool:
        rows[:] = [
            r
            for r in leaf_runs(
                namespace_task_runs(hatchet_namespace, since, (RowsProbe.name,)),
                hatchet_namespace,
                RowsProbe.name,
            )
            if r.status == V1TaskStatus.COMPLETED
        ]
        return sum(_carried(r) for r in rows) >= n

    wait_until_listed(listed)
    by_rows = [r for r in rows if r.input["input"].get("rows")]
    inline = [r for r in rows if not r.input["input"].get("rows")]
    print(
        f"\n{len(rows)} leaf task runs: {len(inline)} inline "
        f"({sum(_carried(r) for r in inline)} specs), {len(by_rows)} by rows "
        f"({sum(_carried(r) for r in by_rows)} specs); largest input "
        f"{max(len(json.dumps(r.input)) for r in rows)} bytes, output "
        f"{max(len(json.dumps(r.output)) for r in rows)} bytes"
    )
    assert sum(_carried(r) for r in rows) == n  # every spec in exactly one completed task
    # Three nodes of 1,000: two probe leaves each, then guided batches of a quarter of what is
    # left (250, 187, 141, ...: a minute's worth is more than a node holds, however slow the
    # probes looked), down to a second's worth: at least 578 of each node's 998 go by rows
    # (all of them when the probes look fast), the probes and the small tails inline.
    assert sum(_carried(r) for r in by_rows) >= n // 2
    for r in by_rows:
        payload = r.input["input"]
        assert payload["specs"] == [] and payload["specs_key"].endswith(".pq")
        assert _carried(r) > INLINE_SPECS
        assert r.output["outcomes"] == [] and "/journal/" in r.output["outcomes_key"]
    assert max(len(json.dumps(r.input)) for r in by_rows) < 2048
    assert max(len(json.dumps(r.output)) for r in by_rows) < 2048


def test_a_table_of_specs_runs_on_hatchet_from_its_columns(
    start_worker: StartWorker, s3_store: S3Store
) -> None:
    """A sweep given as a DataFrame keeps no JSON in specs.pq: the probes' inline payloads
    are written from the columns, and the row batches' processes build specs from them."""
    n = 2000
    workers = [start_worker("table", slots="4")]
    frame = pd.DataFrame({"i": range(n), "counter_dir": "", "seconds": 0.0})
    run = Probe.allocate(
        frame,
        store=s3_store,
        engine=HatchetEngine(split_above=0),
        recursion=RecursionPolicy(factor=2, max_depth=1),
    )
    wait_or_explain(run, 180, *workers)
    assert run.status == "completed", run.progress()
    stored = s3_store.get_bytes(run.layout.specs)
    assert pq.read_table(pa.BufferReader(stored)).column(SPEC_COLUMN).null_count == n
    account_for_everything(run, n)
    scalars = run.results.scalars()
    assert sorted(scalars.index.get_level_values("i")) == list(range(n))
    assert (scalars["square"] == scalars.index.get_level_values("i") ** 2).all()


def wait_until_listed(listed: Callable[[], bool]) -> None:
    """The engine's run listing is eventually consistent: poll it, bounded; the assertions
    after it say what is missing if it never caught up."""
    with contextlib.suppress(TimeoutError):
        wait_until(listed, 60, "the engine lists every leaf task run")


def test_a_crash_in_a_row_batch_is_one_failure_row(
    start_worker: StartWorker, hatchet_namespace: str, tmp_path: Path
) -> None:
    """Spec 5 segfaults inside a batch of hundreds named by rows: the batch gives out, runs
    again as smaller batches down to spec 5 alone, and only spec 5 is a failure row."""
    n = 400
    worker = start_worker("crashy", modules=("tests.support.counting",), slots="2")
    counter = tmp_path / "count"
    counter.mkdir()
    since = utc_now() - dt.timedelta(seconds=5)
    run = Crashy.allocate(
        [CountedInput(i=i, counter_dir=str(counter)) for i in range(n)],
        store=LocalStore(tmp_path / "store"),
        engine=HatchetEngine(split_above=0),
        recursion=RecursionPolicy(max_depth=0),
    )
    wait_or_explain(run, 240, worker)
    assert run.status == "completed_with_failures", run.progress()
    account_for_everything(run, n)
    failures = run.failures()
    assert failures.index.get_level_values("sort_index").tolist() == [5]
    assert "died" in failures["error_message"].iloc[0], failures.iloc[0].to_dict()
    scalars = run.results.scalars()
    assert (scalars["square"] == scalars.index.get_level_values("sort_index") ** 2).all()
    runs = counted(counter)
    assert set(runs) == set(range(n))
    assert worker.proc is not None and worker.proc.poll() is None
    # Split eight ways per round, not spec by spec: far fewer tasks than specs.
    tasks = leaf_runs(
        namespace_task_runs(hatchet_namespace, since, (Crashy.name,)),
        hatchet_namespace,
        Crashy.name,
    )
    print(f"\n{len(tasks)} leaf task runs for {n} specs; spec 5 ran {runs[5]} times")
    assert len(tasks) < 60, len(tasks)
