"""The building-energy model wrapped as a scythe_oo Experiment.

Everything scythe_oo needs to know is here: what one simulation takes
(``BuildingInput``), what it returns (``BuildingOutput``) and how to run it
(``SimulateEnergy.run``). Distribution, retries, file transfer and collecting
results into Parquet are the framework's job.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self

import pandas as pd
from pydantic import Field, model_validator

from examples.building_energy.model import simulate
from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    FileReference,
    LeafContext,
    RecursionPolicy,
)


class BuildingInput(ExperimentInputSpec):
    """Design parameters of one office building and the climate it is in.

    The bounds are physical limits, not the sampled ranges: they catch typos
    (an R-value in ft2.F.h/Btu, a setpoint in Fahrenheit) before a run starts.
    """

    r_value: float = Field(description="Wall R-value incl. air films [m2K/W]", ge=0.5, le=15)
    window_u: float = Field(description="Window U-value [W/m2K]", ge=0.5, le=6)
    wwr: float = Field(description="Window-to-wall ratio [-]", ge=0.05, le=0.95)
    setpoint_heating: float = Field(description="Heating setpoint [degC]", ge=10, le=25)
    setpoint_cooling: float = Field(description="Cooling setpoint [degC]", ge=18, le=32)
    infiltration_ach: float = Field(description="Infiltration [air changes/h]", ge=0, le=3)
    economizer: Literal["none", "drybulb"] = Field(
        default="none", description="Outdoor-air free cooling control"
    )
    weather_file: FileReference = Field(description="Hourly weather [.csv]")

    @model_validator(mode="after")
    def _deadband(self) -> Self:
        """A cooling setpoint below the heating one would make the HVAC fight itself."""
        if self.setpoint_cooling < self.setpoint_heating:
            raise ValueError("setpoint_cooling must be >= setpoint_heating")
        return self


class BuildingOutput(ExperimentOutputSpec):
    """Annual results of one building; intensities are per m2 of floor area."""

    heating: float = Field(description="Annual heating [kWh/m2]", ge=0)
    cooling: float = Field(description="Annual cooling [kWh/m2]", ge=0)
    peak_heating: float = Field(description="Peak hourly heating [W/m2]", ge=0)
    peak_cooling: float = Field(description="Peak hourly cooling [W/m2]", ge=0)
    timeseries: FileReference = Field(description="Hourly loads [.parquet]")


class SimulateEnergy(Experiment[BuildingInput, BuildingOutput]):
    """Heating and cooling loads of a box office building, one design per leaf.

    A simulation takes about a millisecond, far less than the cost of
    dispatching a task, so the recursion policy fans each batch out into up to
    10 sub-batches just once: leaves stay big enough to be worth scheduling.
    """

    recursion = RecursionPolicy(factor=10, max_depth=1)

    def setup(self) -> None:
        """Start an empty weather cache; a worker sees only a few climates, many times each."""
        self._weather: dict[Path, pd.DataFrame] = {}

    def run(self, spec: BuildingInput, ctx: LeafContext) -> BuildingOutput:
        """Simulate one design and keep the hourly loads as a file, the rest as columns."""
        if not isinstance(spec.weather_file, Path):  # the framework localises files before run
            raise TypeError(f"expected a local weather file, got {spec.weather_file!r}")
        weather = self._weather.get(spec.weather_file)
        if weather is None:
            ctx.log(f"loading weather {spec.weather_file.name}")
            weather = pd.read_csv(spec.weather_file)
            self._weather[spec.weather_file] = weather

        result = simulate(
            weather,
            r_value=spec.r_value,
            window_u=spec.window_u,
            wwr=spec.wwr,
            setpoint_heating=spec.setpoint_heating,
            setpoint_cooling=spec.setpoint_cooling,
            infiltration_ach=spec.infiltration_ach,
            economizer=spec.economizer,
        )

        # float32 halves the size of the 8760-row file; watt-level precision is plenty.
        timeseries = ctx.workdir / "timeseries.parquet"
        result.hourly.astype("float32").to_parquet(timeseries)

        return BuildingOutput(
            heating=result.heating_kwh_m2,
            cooling=result.cooling_kwh_m2,
            peak_heating=result.peak_heating_w_m2,
            peak_cooling=result.peak_cooling_w_m2,
            timeseries=timeseries,
            dataframes={"monthly": result.monthly},
        )
