"""Generate the synthetic hourly weather files shipped in ``weather/``.

The example must run offline and without licensing questions, so instead of
real TMY/EPW files we synthesise a typical year per climate. The recipe is
deliberately simple but produces realistic magnitudes:

* dry-bulb temperature = annual sinusoid (coldest around 20 January)
  + diurnal sinusoid (warmest at 15:00, damped on cloudy days)
  + AR(1) noise with a ~2-day memory, mimicking passing weather systems;
* global horizontal irradiance = clear-sky GHI from solar geometry
  (Haurwitz model) times a daily cloud factor drawn from its own AR(1) process.

Everything is seeded, so re-running ``python -m examples.building_energy.make_weather``
rewrites byte-identical CSVs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HOURS_PER_YEAR = 8760
WEATHER_DIR = Path(__file__).parent / "weather"


@dataclass(frozen=True)
class Climate:
    """Parameters of one synthetic climate; temperatures in degC, latitude in degrees."""

    name: str
    seed: int
    latitude: float
    mean_c: float  # annual mean dry-bulb
    annual_amplitude_c: float  # half the difference between July and January means
    diurnal_amplitude_c: float  # half the clear-day diurnal range
    noise_sd_c: float  # stationary standard deviation of the weather noise
    mean_clearness: float  # average fraction of clear-sky GHI reaching the ground


CLIMATES: tuple[Climate, ...] = (
    # Roughly Minneapolis: cold winters, warm summers, moderately cloudy.
    Climate("cold_continental", 1, 45.0, 7.5, 16.0, 5.0, 4.5, 0.76),
    # Roughly Baltimore/Nashville: both heating and cooling matter.
    Climate("mixed_humid", 2, 38.0, 14.0, 11.5, 4.5, 3.5, 0.8),
    # Roughly Phoenix: hot, sunny, large day/night swings.
    Climate("hot_dry", 3, 33.5, 23.5, 10.5, 7.5, 2.0, 0.95),
)


def ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """Stationary AR(1) series with lag-1 autocorrelation ``phi`` and standard deviation ``sd``.

    A plain loop is fine here: this runs once, offline, not inside the model.
    """
    innovations = rng.normal(0.0, sd * np.sqrt(1.0 - phi**2), n)
    out = np.empty(n)
    out[0] = rng.normal(0.0, sd)
    for i in range(1, n):
        out[i] = phi * out[i - 1] + innovations[i]
    return out


def clear_sky_ghi(latitude_deg: float, hours: np.ndarray) -> np.ndarray:
    """Clear-sky GHI [W/m2] from the Haurwitz model, hours in local solar time.

    Haurwitz needs only the solar zenith angle, which is all we can justify for
    synthetic data; it is within ~10 % of more elaborate clear-sky models.
    """
    day = hours // 24 + 1  # day of year, 1..365
    solar_hour = hours % 24 + 0.5  # mid-hour, so the value represents the whole hour
    declination = np.radians(23.45) * np.sin(2.0 * np.pi * (284 + day) / 365.0)
    hour_angle = np.radians(15.0 * (solar_hour - 12.0))
    lat = np.radians(latitude_deg)
    cos_zenith = np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(
        hour_angle
    )
    cos_zenith = np.clip(cos_zenith, 0.0, None)
    with np.errstate(divide="ignore"):
        ghi = 1098.0 * cos_zenith * np.exp(-0.057 / cos_zenith)
    return np.where(cos_zenith > 0.0, ghi, 0.0)


def make_climate(climate: Climate) -> pd.DataFrame:
    """Build the 8760-row weather table for one climate."""
    rng = np.random.default_rng(climate.seed)
    hours = np.arange(HOURS_PER_YEAR)
    day = hours // 24

    # Cloudiness varies day to day with ~3-day persistence; clip to physical bounds.
    daily_clearness = np.clip(
        climate.mean_clearness + ar1(rng, HOURS_PER_YEAR // 24, phi=0.7, sd=0.18), 0.15, 1.0
    )
    clearness = daily_clearness[day]
    ghi = clear_sky_ghi(climate.latitude, hours) * clearness

    annual = -climate.annual_amplitude_c * np.cos(2.0 * np.pi * (hours / 24.0 - 20.0) / 365.0)
    # Clouds damp the diurnal swing: a fully overcast day keeps ~40 % of it.
    diurnal_amp = climate.diurnal_amplitude_c * (0.4 + 0.6 * clearness)
    diurnal = diurnal_amp * np.cos(2.0 * np.pi * (hours % 24 - 15.0) / 24.0)
    noise = ar1(rng, HOURS_PER_YEAR, phi=0.98, sd=climate.noise_sd_c)
    dry_bulb = climate.mean_c + annual + diurnal + noise

    return pd.DataFrame(
        {
            "hour": hours,
            "dry_bulb_c": np.round(dry_bulb, 1),
            "ghi_w_m2": np.round(ghi, 1),
        }
    )


def main() -> None:
    """Write one CSV per climate and print a summary to eyeball realism."""
    WEATHER_DIR.mkdir(exist_ok=True)
    for climate in CLIMATES:
        df = make_climate(climate)
        path = WEATHER_DIR / f"{climate.name}.csv"
        df.to_csv(path, index=False)
        t = df["dry_bulb_c"]
        print(
            f"{path.name:22s} T mean {t.mean():5.1f} min {t.min():5.1f} max {t.max():5.1f} degC, "
            f"GHI {df['ghi_w_m2'].sum() / 1000:6.0f} kWh/m2/yr"
        )


if __name__ == "__main__":
    main()
