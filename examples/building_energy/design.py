"""Design, estimate, run and report a building-energy sweep, all from the schema.

    python -m examples.building_energy.design --n 500 --workers 200 --price 0.015

Four steps instead of a hand-written sampler and hand-written plots:

1. ``BuildingInput.sample`` draws a Latin hypercube over the bounds ``BuildingInput`` declares,
   narrowed to the studied ranges, with the weather files as choices;
2. ``SimulateEnergy.estimate`` runs a random pilot here and projects the sweep on ``--workers``
   workers at ``--price`` per core-hour (0.015: a 1 vCPU / 2 GB Fargate Spot worker, an example
   price as of January 2025; see the README);
3. ``allocate`` runs the sweep and records the design in manifest.yml;
4. ``run.report()`` writes one self-contained HTML page next to the results.
"""

from __future__ import annotations

import argparse

from examples.building_energy.experiment import BuildingInput, SimulateEnergy
from examples.building_energy.sample import WEATHER_FILES

STUDIED_RANGES = {
    # The schema's bounds are physical limits; these are the designs this study compares.
    # Heating setpoints stay below cooling ones, so the model's deadband check always passes.
    "r_value": (1.0, 8.0),
    "window_u": (0.8, 5.0),
    "wwr": (0.1, 0.7),
    "setpoint_heating": (18.0, 22.0),
    "setpoint_cooling": (23.0, 27.0),
    "infiltration_ach": (0.1, 1.0),
}


def main(argv: list[str] | None = None) -> None:
    """Sample, estimate, run, report; print what each step says."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="designs in the sweep")
    parser.add_argument("--method", default="lhs", help="lhs, sobol, halton, random or grid")
    parser.add_argument("--seed", type=int, default=0, help="seed of the design")
    parser.add_argument("--pilot", type=int, default=30, help="designs the pilot runs")
    parser.add_argument("--workers", type=int, default=200, help="workers to project onto")
    parser.add_argument("--price", type=float, default=0.015, help="$ per core-hour")
    args = parser.parse_args(argv)

    specs = BuildingInput.sample(
        args.n,
        args.method,
        seed=args.seed,
        ranges=STUDIED_RANGES,
        choices={"weather_file": list(WEATHER_FILES)},
    )
    print(f"sampled {len(specs)} designs: {specs.design.method}, seed {specs.design.seed}\n")

    estimate = SimulateEnergy.estimate(
        specs, pilot=args.pilot, workers=args.workers, cost_per_core_hour=args.price
    )
    print(estimate, end="\n\n")

    run = SimulateEnergy.allocate(specs).wait()
    print(f"run folder: {run.uri} ({run.status})")
    print(f"report:     {run.report()}")


if __name__ == "__main__":
    main()
