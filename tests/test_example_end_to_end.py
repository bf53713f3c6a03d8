"""The shipped example, end to end, on both stores: the tables must be identical."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from invariants import account_for_everything

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample
from scythe_oo import ExperimentRun, LocalEngine, LocalStore
from scythe_oo.store.s3 import S3Store

pytestmark = pytest.mark.timeout(240)

# Levels that name where a run lives (folder id, run id, store URIs) differ between stores by
# design; everything else must match exactly.
PLACE_LEVELS = ["experiment_id", "root_workflow_run_id"]


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(level=PLACE_LEVELS, drop=True)
    weather = frame.index.get_level_values("weather_file").map(lambda uri: uri.rsplit("/", 1)[-1])
    names = list(frame.index.names)
    frame = frame.reset_index()
    frame["weather_file"] = list(weather)
    if "timeseries" in frame:
        frame["timeseries"] = frame["timeseries"].map(lambda uri: uri.split("/results/", 1)[-1])
    return frame.set_index(names)


def test_example_identical_on_local_and_s3(tmp_path: Path, s3_store: S3Store) -> None:
    specs = sample(60, seed=3)
    engine = LocalEngine(max_workers=2)
    local = SimulateEnergy.allocate(specs, store=LocalStore(root=tmp_path), engine=engine)
    remote = SimulateEnergy.allocate(specs, store=s3_store, engine=engine)
    local.wait(timeout=180)
    remote.wait(timeout=180)

    assert local.status == remote.status == "completed"
    account_for_everything(local, 60)
    account_for_everything(remote, 60)
    assert remote.uri.startswith(f"s3://{s3_store.bucket}/scythe/simulate_energy/v1.0.0/")
    for name in ("scalars", "result_file_refs", "monthly", "failures"):
        a = comparable(local.results.dataframe(name))
        b = comparable(remote.results.dataframe(name))
        pd.testing.assert_frame_equal(a, b)
    scalars = remote.results.scalars()
    assert len(scalars) == 60 and (scalars["heating"] >= 0).all()
    assert set(scalars.index.get_level_values("weather_file").str[:5]) == {"s3://"}

    # a new process (here: a fresh handle from the URI alone) sees the same run
    reopened = ExperimentRun.open(remote.uri)
    assert reopened.status == "completed"
    assert reopened.results.list() == remote.results.list()

    # output files went to the bucket and are readable through the store
    uri = remote.results.file_refs()["timeseries"].iloc[0]
    key = s3_store.key_of(uri)
    assert key is not None
    hourly = pd.read_parquet(pd.io.common.BytesIO(s3_store.get_bytes(key)))
    assert len(hourly) == 8760


def test_bucket_setting_selects_s3(
    s3_bucket: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCYTHE_STORAGE_BUCKET", s3_bucket)
    monkeypatch.setenv("SCYTHE_STORAGE_BUCKET_PREFIX", "team-a")
    monkeypatch.chdir(tmp_path)
    run = SimulateEnergy.allocate(sample(3, seed=1)).wait(timeout=120)
    assert run.uri.startswith(f"s3://{s3_bucket}/team-a/simulate_energy/")
    assert not (tmp_path / "scythe-data").exists()
    assert len(run.results.scalars()) == 3
