"""An analytic hourly building-energy model, small enough to read in one sitting.

This stands in for a real simulator (EnergyPlus, ...) in the scythe_oo example:
it has the same shape (design parameters + weather file in, annual metrics and
time series out) but runs in about a millisecond, so sweeping thousands of
designs takes seconds. It has no framework imports and can be used on its own.

The building is a rectangular box with a square footprint. Each hour we solve a
steady-state heat balance of a single, well-mixed zone:

    free-floating temperature   T_free = T_out + Q_gains / UA
    heating load                max(0, UA * (T_heat - T_free))
    cooling load                max(0, UA * (T_free - T_cool))

where UA [W/K] sums conduction through walls, windows and roof plus infiltration.
This is the classic variable-base degree-hour method. Two refinements keep it from
being too crude:

* thermal mass: solar and internal gains do not hit the air instantly. Like the
  ASHRAE radiant time series method, half of each gain is convective (immediate)
  and half is radiant, released over the next 24 h with a 6 h time constant;
* a dry-bulb economizer: when outdoor air is cool enough, extra outside air
  removes cooling load for free, up to a maximum outdoor air flow.

Assumptions: no ground heat transfer, no latent loads, ideal HVAC (loads, not
fuel use), weather hours are local solar time starting Monday 1 January 00:00.
Units are SI throughout: W, m2, K (or degC for temperatures), hours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

HOURS_PER_YEAR = 8760
_DAYS_PER_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
#: Volumetric heat capacity of air, rho * cp [J/(m3 K)].
AIR_HEAT_CAPACITY = 1.2 * 1005.0
#: Mean irradiance on the four facades relative to GHI. Annual vertical
#: irradiance averaged over N/E/S/W is roughly half the horizontal value.
VERTICAL_TO_HORIZONTAL = 0.5

# Calendar arrays are the same for every call, so build them once at import.
_MONTH_OF_HOUR = np.repeat(np.repeat(np.arange(12), _DAYS_PER_MONTH), 24)  # 0-based month
_HOUR_OF_DAY = np.arange(HOURS_PER_YEAR) % 24
_WEEKDAY = (np.arange(HOURS_PER_YEAR) // 24) % 7 < 5  # day 0 is a Monday
#: Office occupancy, weekdays 08:00-18:00.
OCCUPIED = _WEEKDAY & (_HOUR_OF_DAY >= 8) & (_HOUR_OF_DAY < 18)


def _mass_kernel(convective_fraction: float = 0.5, tau_h: float = 6.0) -> np.ndarray:
    """Fraction of a heat gain that becomes load 0, 1, ..., 23 hours later (sums to 1).

    Why: without thermal mass, solar gains would create unrealistically sharp
    cooling peaks at noon and no evening load. Summing to exactly 1 means mass
    delays energy but never creates or destroys it.
    """
    radiant: np.ndarray = np.exp(-np.arange(24) / tau_h)
    kernel: np.ndarray = (1.0 - convective_fraction) * radiant / radiant.sum()
    kernel[0] += convective_fraction
    return kernel


_KERNEL = _mass_kernel()


@dataclass(frozen=True)
class Geometry:
    """Derived envelope areas [m2] and air volume [m3] of the box building."""

    wall_opaque: float
    window: float
    roof: float
    volume: float

    @classmethod
    def box(cls, floor_area: float, n_floors: int, floor_height: float, wwr: float) -> Geometry:
        """Square footprint: the most compact plan, so results depend on envelope, not shape."""
        footprint = floor_area / n_floors
        perimeter = 4.0 * np.sqrt(footprint)
        gross_wall = perimeter * floor_height * n_floors
        return cls(
            wall_opaque=gross_wall * (1.0 - wwr),
            window=gross_wall * wwr,
            roof=footprint,
            volume=floor_area * floor_height,
        )


@dataclass(frozen=True)
class ModelResult:
    """Outputs of one simulation; intensities are per m2 of conditioned floor area."""

    heating_kwh_m2: float
    cooling_kwh_m2: float
    peak_heating_w_m2: float
    peak_cooling_w_m2: float
    #: 8760 rows indexed by ``hour``; columns ``heating_w``, ``cooling_w`` [W], whole building.
    hourly: pd.DataFrame
    #: 12 rows indexed by ``month`` (1..12); columns ``heating_kwh_m2``, ``cooling_kwh_m2``.
    monthly: pd.DataFrame
    #: Overall heat loss coefficient [W/K], exposed so callers can sanity-check results.
    ua_w_k: float


def circular_lag(values: np.ndarray, kernel: np.ndarray = _KERNEL) -> np.ndarray:
    """Convolve an hourly series with ``kernel``, wrapping December into January.

    Wrapping treats the typical year as periodic, which is what keeps the annual
    total of the lagged series equal to the original one.
    """
    padded = np.concatenate((values[-(len(kernel) - 1) :], values))
    return np.convolve(padded, kernel, mode="valid")


def simulate(
    weather: pd.DataFrame,
    *,
    r_value: float,
    window_u: float,
    wwr: float,
    setpoint_heating: float,
    setpoint_cooling: float,
    infiltration_ach: float,
    economizer: Literal["none", "drybulb"],
    floor_area: float = 500.0,
    n_floors: int = 2,
    floor_height: float = 3.5,
    roof_u: float = 0.25,
    shgc: float = 0.4,
    gains_occupied_w_m2: float = 15.0,
    gains_unoccupied_w_m2: float = 3.0,
    economizer_limit_c: float = 21.0,
    economizer_max_ach: float = 3.0,
) -> ModelResult:
    """Hourly heating and cooling loads of a box office building for one year.

    Args:
        weather: 8760 rows in hour order with ``dry_bulb_c`` [degC] and ``ghi_w_m2`` [W/m2].
        r_value: wall assembly thermal resistance including air films [m2K/W].
        window_u: window U-value [W/m2K].
        wwr: window-to-wall ratio [-], same on all facades.
        setpoint_heating: heating setpoint [degC], held around the clock (no setback).
        setpoint_cooling: cooling setpoint [degC], must not be below ``setpoint_heating``.
        infiltration_ach: infiltration rate [air changes per hour].
        economizer: ``"drybulb"`` uses outdoor air for free cooling when it is below
            both ``economizer_limit_c`` and the cooling setpoint.
        floor_area: conditioned floor area [m2].
        n_floors: number of storeys [-].
        floor_height: floor-to-floor height [m].
        roof_u: roof U-value [W/m2K]; fixed so the sweep isolates wall and window effects.
        shgc: window solar heat gain coefficient [-].
        gains_occupied_w_m2: people + lights + plug loads while occupied [W/m2].
        gains_unoccupied_w_m2: standby loads otherwise [W/m2].
        economizer_limit_c: dry-bulb high limit above which the economizer closes [degC];
            21 degC is the ASHRAE 90.1 fixed limit for humid climates.
        economizer_max_ach: largest outdoor air flow the economizer can move [1/h].

    Returns:
        Annual intensities [kWh/m2], peaks [W/m2], hourly and monthly tables.
    """
    if len(weather) != HOURS_PER_YEAR:
        raise ValueError(f"weather must have {HOURS_PER_YEAR} hourly rows, got {len(weather)}")
    if setpoint_cooling < setpoint_heating:
        raise ValueError("setpoint_cooling must be >= setpoint_heating")
    if not 0.0 <= wwr < 1.0:
        raise ValueError("wwr must be in [0, 1)")

    t_out = weather["dry_bulb_c"].to_numpy(dtype=np.float64)
    ghi = weather["ghi_w_m2"].to_numpy(dtype=np.float64)
    geo = Geometry.box(floor_area, n_floors, floor_height, wwr)

    air_w_k_per_ach = AIR_HEAT_CAPACITY * geo.volume / 3600.0  # W/K for 1 ACH
    ua = (
        geo.wall_opaque / r_value
        + geo.window * window_u
        + geo.roof * roof_u
        + infiltration_ach * air_w_k_per_ach
    )

    solar = shgc * geo.window * VERTICAL_TO_HORIZONTAL * ghi
    internal = floor_area * np.where(OCCUPIED, gains_occupied_w_m2, gains_unoccupied_w_m2)
    gains = circular_lag(solar + internal)

    # UA * (T_set - T_free) written out to avoid dividing by UA.
    heating = np.maximum(ua * (setpoint_heating - t_out) - gains, 0.0)
    cooling = np.maximum(ua * (t_out - setpoint_cooling) + gains, 0.0)

    if economizer == "drybulb":
        usable = t_out < min(economizer_limit_c, setpoint_cooling)
        capacity = economizer_max_ach * air_w_k_per_ach * (setpoint_cooling - t_out)
        cooling = np.where(usable, np.maximum(cooling - capacity, 0.0), cooling)
    elif economizer != "none":
        raise ValueError(f"unknown economizer {economizer!r}")

    # Hourly W summed over one-hour steps is Wh; / 1000 -> kWh.
    monthly_heating = np.bincount(_MONTH_OF_HOUR, weights=heating, minlength=12)
    monthly_cooling = np.bincount(_MONTH_OF_HOUR, weights=cooling, minlength=12)
    per_m2 = 1.0 / (1000.0 * floor_area)

    return ModelResult(
        heating_kwh_m2=float(heating.sum() * per_m2),
        cooling_kwh_m2=float(cooling.sum() * per_m2),
        peak_heating_w_m2=float(heating.max() / floor_area),
        peak_cooling_w_m2=float(cooling.max() / floor_area),
        hourly=pd.DataFrame(
            {"heating_w": heating, "cooling_w": cooling},
            index=pd.RangeIndex(HOURS_PER_YEAR, name="hour"),
        ),
        monthly=pd.DataFrame(
            {
                "heating_kwh_m2": monthly_heating * per_m2,
                "cooling_kwh_m2": monthly_cooling * per_m2,
            },
            index=pd.RangeIndex(1, 13, name="month"),
        ),
        ua_w_k=float(ua),
    )
