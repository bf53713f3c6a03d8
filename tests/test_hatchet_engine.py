"""The distributed engine against a real Hatchet engine, workers as subprocesses, S3 on moto."""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest
from fixtures_hatchet import WorkerProcess
from hatchet_experiments import Probe, ProbeInput
from test_example_end_to_end import comparable

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample
from scythe_oo import ExperimentRun, HatchetEngine, LocalEngine, RecursionPolicy
from scythe_oo.store.s3 import S3Store

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(300)]

StartWorker = Callable[..., WorkerProcess]


def account_for_everything(run: ExperimentRun, n: int) -> None:
    ok = list(run.results.scalars().index.get_level_values("sort_index"))
    failed = list(run.failures().index.get_level_values("sort_index"))
    assert sorted(ok + failed) == list(range(n))


def test_example_on_hatchet_matches_local(start_worker: StartWorker, s3_store: S3Store) -> None:
    start_worker("both")
    specs = sample(40, seed=11)
    tree = RecursionPolicy(factor=3, max_depth=2)
    remote = SimulateEnergy.allocate(specs, store=s3_store, engine=HatchetEngine(), recursion=tree)
    local = SimulateEnergy.allocate(
        specs, store=s3_store, engine=LocalEngine(max_workers=2), recursion=tree
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
        if key.endswith("_node.yml")
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
