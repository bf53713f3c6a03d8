"""Run the building-energy sweep: ``python -m examples.building_energy --n 1000``.

Three steps: describe the designs, hand them to the experiment, read the results.
"""

from __future__ import annotations

import argparse
import time

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample


def main() -> None:
    """Sample designs, run them all, and summarise the results."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000, help="number of designs to simulate")
    parser.add_argument("--seed", type=int, default=0, help="random seed for the designs")
    args = parser.parse_args()

    specs = sample(args.n, seed=args.seed)

    start = time.perf_counter()
    run = SimulateEnergy.allocate(specs)  # returns at once; the work runs in the background
    run.wait()
    elapsed = time.perf_counter() - start

    print(f"run folder: {run.uri}")
    print(f"{len(specs)} simulations in {elapsed:.1f} s\n")
    print(run.results.scalars().describe().T.to_string(), end="\n\n")
    print("monthly loads [kWh/m2], first rows:")
    print(run.results.dataframe("monthly").head(12).to_string())


if __name__ == "__main__":
    main()
