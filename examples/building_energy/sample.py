"""Random designs to feed to ``SimulateEnergy``.

Uniform random sampling written by hand: the simplest design of experiments
that still covers the space evenly on average. ``design.py`` draws a Latin
hypercube from ``BuildingInput``'s own bounds instead (``BuildingInput.sample``),
which covers the space as well with fewer runs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from examples.building_energy.experiment import BuildingInput

WEATHER_FILES: tuple[Path, ...] = tuple(
    sorted((Path(__file__).parent / "weather").resolve().glob("*.csv"))
)


def sample(n: int, seed: int = 0) -> list[BuildingInput]:
    """Draw ``n`` designs; the same ``seed`` always gives the same designs.

    The ranges span a poorly to a well insulated office. Heating setpoints stay
    below cooling ones (18-22 vs 23-27 degC), so every draw is valid.
    """
    rng = np.random.default_rng(seed)
    r_value = rng.uniform(1.0, 8.0, n)
    window_u = rng.uniform(0.8, 5.0, n)
    wwr = rng.uniform(0.1, 0.7, n)
    setpoint_heating = rng.uniform(18.0, 22.0, n)
    setpoint_cooling = rng.uniform(23.0, 27.0, n)
    infiltration_ach = rng.uniform(0.1, 1.0, n)
    has_economizer = rng.random(n) < 0.5
    weather = rng.integers(0, len(WEATHER_FILES), n)

    return [
        BuildingInput(
            r_value=float(r_value[i]),
            window_u=float(window_u[i]),
            wwr=float(wwr[i]),
            setpoint_heating=float(setpoint_heating[i]),
            setpoint_cooling=float(setpoint_cooling[i]),
            infiltration_ach=float(infiltration_ach[i]),
            economizer="drybulb" if has_economizer[i] else "none",
            weather_file=WEATHER_FILES[weather[i]],
        )
        for i in range(n)
    ]
