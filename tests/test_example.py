"""The building-energy example: its model on its own, and end to end on the local engine, on
LocalStore and on S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.model import HOURS_PER_YEAR, circular_lag, simulate
from examples.building_energy.sample import sample
from scythe_oo import ExperimentRun, LocalEngine, LocalStore, S3Store
from tests.support.invariants import account_for_everything

WEATHER_DIR = Path(__file__).resolve().parents[1] / "examples" / "building_energy" / "weather"
CLIMATES = ("cold_continental", "mixed_humid", "hot_dry")

BASE: dict[str, Any] = {
    "r_value": 3.0,
    "window_u": 2.0,
    "wwr": 0.4,
    "setpoint_heating": 20.0,
    "setpoint_cooling": 24.0,
    "infiltration_ach": 0.4,
    "economizer": "none",
}


@pytest.fixture(scope="module", params=CLIMATES)
def weather(request: pytest.FixtureRequest) -> pd.DataFrame:
    return pd.read_csv(WEATHER_DIR / f"{request.param}.csv")


@pytest.fixture(scope="module")
def hot() -> pd.DataFrame:
    return pd.read_csv(WEATHER_DIR / "hot_dry.csv")


@pytest.fixture(scope="module")
def cold() -> pd.DataFrame:
    return pd.read_csv(WEATHER_DIR / "cold_continental.csv")


def test_weather_files_are_a_plausible_year(weather: pd.DataFrame) -> None:
    assert list(weather.columns) == ["hour", "dry_bulb_c", "ghi_w_m2"]
    assert len(weather) == HOURS_PER_YEAR
    assert (weather["hour"].to_numpy() == np.arange(HOURS_PER_YEAR)).all()
    assert not weather.isna().any().any()
    t, ghi = weather["dry_bulb_c"], weather["ghi_w_m2"]
    assert t.min() > -45 and t.max() < 50
    assert 0 < t.mean() < 30
    assert ghi.min() == 0 and ghi.max() < 1100  # dark at night, below the solar constant
    assert 1000 < ghi.sum() / 1000 < 2500  # annual kWh/m2, real climates span ~900-2600
    night = weather["hour"] % 24 < 4
    assert (ghi[night] == 0).all()
    # Summer warmer than winter (northern hemisphere).
    assert t.iloc[4344:5088].mean() > t.iloc[:744].mean() + 10


def test_climates_are_ordered(cold: pd.DataFrame, hot: pd.DataFrame) -> None:
    cold_result, hot_result = simulate(cold, **BASE), simulate(hot, **BASE)
    assert cold_result.heating_kwh_m2 > 3 * hot_result.heating_kwh_m2
    assert hot_result.cooling_kwh_m2 > 2 * cold_result.cooling_kwh_m2


def test_output_shapes_and_units(weather: pd.DataFrame) -> None:
    result = simulate(weather, **BASE)
    assert list(result.hourly.columns) == ["heating_w", "cooling_w"]
    assert result.hourly.index.name == "hour"
    assert len(result.hourly) == HOURS_PER_YEAR
    assert (result.hourly >= 0).all().all()
    assert list(result.monthly.columns) == ["heating_kwh_m2", "cooling_kwh_m2"]
    assert result.monthly.index.name == "month"
    assert list(result.monthly.index) == list(range(1, 13))
    # Plausible magnitudes for an office: tens to a few hundred kWh/m2, peaks below 200 W/m2.
    assert 5 < result.heating_kwh_m2 + result.cooling_kwh_m2 < 500
    assert 0 < result.peak_heating_w_m2 < 200
    assert 0 < result.peak_cooling_w_m2 < 200


def test_annual_and_monthly_equal_sum_of_hourly(weather: pd.DataFrame) -> None:
    area = 800.0
    result = simulate(weather, **BASE, floor_area=area)
    hourly_kwh_m2 = result.hourly.sum() / 1000 / area  # 1 h steps: W -> Wh
    assert result.heating_kwh_m2 == pytest.approx(hourly_kwh_m2["heating_w"], rel=1e-12)
    assert result.cooling_kwh_m2 == pytest.approx(hourly_kwh_m2["cooling_w"], rel=1e-12)
    assert result.monthly["heating_kwh_m2"].sum() == pytest.approx(result.heating_kwh_m2)
    assert result.monthly["cooling_kwh_m2"].sum() == pytest.approx(result.cooling_kwh_m2)
    assert result.peak_heating_w_m2 == pytest.approx(result.hourly["heating_w"].max() / area)


def test_hourly_heat_balance(cold: pd.DataFrame) -> None:
    """With no gains, heating is exactly UA times the degree-hours below the setpoint."""
    dark = cold.assign(ghi_w_m2=0.0)
    result = simulate(
        dark, **BASE, gains_occupied_w_m2=0.0, gains_unoccupied_w_m2=0.0, floor_area=1000.0
    )
    degree_hours = np.maximum(20.0 - cold["dry_bulb_c"].to_numpy(), 0.0)
    np.testing.assert_allclose(result.hourly["heating_w"], result.ua_w_k * degree_hours)


def test_heating_falls_as_insulation_rises(weather: pd.DataFrame) -> None:
    heating = [
        simulate(weather, **{**BASE, "r_value": r}).heating_kwh_m2 for r in (0.5, 1, 2, 4, 8)
    ]
    assert (np.diff(heating) < 0).all()


def test_heating_rises_with_leakier_envelope(cold: pd.DataFrame) -> None:
    for key, values in {"infiltration_ach": (0.1, 0.5, 1.5), "window_u": (0.8, 2, 5)}.items():
        heating = [simulate(cold, **{**BASE, key: v}).heating_kwh_m2 for v in values]
        assert heating == sorted(heating) and heating[0] < heating[-1], key


def test_cooling_rises_with_glazing_and_sun_in_hot_climate(hot: pd.DataFrame) -> None:
    cooling = [simulate(hot, **{**BASE, "wwr": w}).cooling_kwh_m2 for w in (0.1, 0.3, 0.5, 0.7)]
    assert (np.diff(cooling) > 0).all()

    sunnier = hot.assign(ghi_w_m2=hot["ghi_w_m2"] * 1.3)
    assert simulate(sunnier, **BASE).cooling_kwh_m2 > simulate(hot, **BASE).cooling_kwh_m2
    assert simulate(sunnier, **BASE).heating_kwh_m2 <= simulate(hot, **BASE).heating_kwh_m2


def test_wider_deadband_reduces_both_loads(weather: pd.DataFrame) -> None:
    narrow = simulate(weather, **BASE)
    wide = simulate(weather, **{**BASE, "setpoint_heating": 18.0, "setpoint_cooling": 26.0})
    assert wide.heating_kwh_m2 < narrow.heating_kwh_m2
    assert wide.cooling_kwh_m2 < narrow.cooling_kwh_m2


def test_economizer_never_increases_cooling(weather: pd.DataFrame) -> None:
    without = simulate(weather, **BASE)
    with_econ = simulate(weather, **{**BASE, "economizer": "drybulb"})
    assert (with_econ.hourly["cooling_w"] <= without.hourly["cooling_w"]).all()
    assert with_econ.cooling_kwh_m2 < without.cooling_kwh_m2  # and it does help somewhere
    # It only moves outdoor air when cooling, so heating is untouched.
    pd.testing.assert_series_equal(with_econ.hourly["heating_w"], without.hourly["heating_w"])
    # Closed above the 21 degC high limit.
    warm = weather["dry_bulb_c"].to_numpy() >= 21.0
    np.testing.assert_array_equal(
        with_econ.hourly["cooling_w"].to_numpy()[warm], without.hourly["cooling_w"].to_numpy()[warm]
    )


def test_thermal_mass_delays_but_conserves_gains() -> None:
    rng = np.random.default_rng(0)
    gains = rng.uniform(0, 1000, HOURS_PER_YEAR)
    lagged = circular_lag(gains)
    assert lagged.shape == gains.shape
    assert lagged.sum() == pytest.approx(gains.sum(), rel=1e-12)
    assert lagged.std() < gains.std()  # mass smooths peaks


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"setpoint_heating": 25.0, "setpoint_cooling": 22.0}, "setpoint"),
        ({"wwr": 1.0}, "wwr"),
        ({"economizer": "enthalpy"}, "economizer"),
    ],
)
def test_rejects_invalid_inputs(hot: pd.DataFrame, override: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(hot, **{**BASE, **override})


def test_rejects_partial_year(hot: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="8760"):
        simulate(hot.iloc[:100], **BASE)


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
