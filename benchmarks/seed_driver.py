"""The seed tool (scythe-engine 1.3.0 from PyPI) driven on the common leaf, for hatchet_compare.py.

Runs with the seed's own venv, never with the repo's (hatchet_compare.py creates it on first use
with ``uv venv`` + ``uv pip install scythe-engine==1.3.0``; none of its code is in this repo):

    SEED/bin/python -m benchmarks.seed_driver worker                 # serve (blocks)
    SEED/bin/python -m benchmarks.seed_driver run --n N --spin-ms MS --bucket B --scratch DIR

The seed is decorator-based: a function registered with ``@ExperimentRegistry.Register()`` is a
Hatchet task, and ``BaseExperiment(runnable=task).allocate(specs)`` uploads specs.pq to S3 and
starts its ``scythe_scatter_gather`` task, whose result names the final tables it wrote to S3.
It only works on S3 (its boto3 client is created at import from the AWS_* environment) and
reads HATCHET_CLIENT_* like any hatchet-sdk program. ``run`` times allocate -> the root task's
result (the final scalars.pq is in the bucket by then), then checks that table's row count
outside the clock, and prints one line of JSON like ``benchmarks.contenders``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd
import scythe
from pydantic import create_model
from scythe.base import ExperimentInputSpec, ExperimentOutputSpec
from scythe.experiments import BaseExperiment
from scythe.registry import ExperimentRegistry
from scythe.settings import ScytheStorageSettings
from scythe.utils.s3 import s3_client
from scythe.worker import ScytheWorkerConfig

from benchmarks.child import emit, peak_rss_mib
from benchmarks.leaves import INPUTS, OUTPUTS, compute, inputs_of

# The common leaf's 10 float inputs and outputs, on the seed's spec bases (built from the field
# names in benchmarks.leaves, so that both tools index their tables by the same columns).
SeedTenInput = create_model(  # type: ignore[call-overload]
    "SeedTenInput", __base__=ExperimentInputSpec, **{f: (float, ...) for f in INPUTS}
)
SeedTenOutput = create_model(  # type: ignore[call-overload]
    "SeedTenOutput", __base__=ExperimentOutputSpec, **{f: (float, ...) for f in OUTPUTS}
)


def _leaf(spec: SeedTenInput, spin_s: float) -> SeedTenOutput:
    y = compute([getattr(spec, f) for f in INPUTS], spin_s)
    return SeedTenOutput(**dict(zip(OUTPUTS, y, strict=True)))


# One registered function per leaf cost: the seed registers functions by name, and its
# workers must know every task before they start.
@ExperimentRegistry.Register(name="bench_seed_ten")
def bench_seed_ten(input_spec: SeedTenInput) -> SeedTenOutput:
    """The common leaf, no-op."""
    return _leaf(input_spec, 0.0)


@ExperimentRegistry.Register(name="bench_seed_ten_2ms")
def bench_seed_ten_2ms(input_spec: SeedTenInput) -> SeedTenOutput:
    """The common leaf after 2 ms of CPU."""
    return _leaf(input_spec, 0.002)


@ExperimentRegistry.Register(name="bench_seed_ten_20ms")
def bench_seed_ten_20ms(input_spec: SeedTenInput) -> SeedTenOutput:
    """The common leaf after 20 ms of CPU."""
    return _leaf(input_spec, 0.020)


TASKS: dict[int, Any] = {0: bench_seed_ten, 2: bench_seed_ten_2ms, 20: bench_seed_ten_20ms}


def run(n: int, spin_ms: int, bucket: str, scratch: Path) -> None:
    """allocate -> the root scatter/gather task's result, timed; then check the final table."""
    started = time.perf_counter()
    specs = [
        SeedTenInput(
            experiment_id="bench", sort_index=i, **dict(zip(INPUTS, inputs_of(i), strict=True))
        )
        for i in range(n)
    ]
    experiment: Any = BaseExperiment(
        runnable=TASKS[spin_ms], storage_settings=ScytheStorageSettings(BUCKET=bucket)
    )
    experiment_run, ref = experiment.allocate(specs, version="bumpmajor")
    allocate_s = time.perf_counter() - started
    result = ref.result()
    seconds = time.perf_counter() - started

    uris = result.uris if hasattr(result, "uris") else result["uris"]
    key = str(uris["scalars"]).removeprefix(f"s3://{bucket}/")
    local = scratch / "scalars.pq"
    s3_client.download_file(Bucket=bucket, Key=key, Filename=str(local))
    rows = len(pd.read_parquet(local))
    # The seed caches the specs it fetched beside its package, per experiment id: drop them.
    shutil.rmtree(Path(scythe.__file__).parent.parent / "cache", ignore_errors=True)
    if rows != n:
        raise RuntimeError(f"seed: final scalars.pq has {rows} rows, expected {n}")
    emit(
        {
            "seconds": seconds,
            "allocate_s": allocate_s,
            **peak_rss_mib(),
            "rows": rows,
            "parquet_bytes": local.stat().st_size,
            "experiment_id": experiment_run.experiment_id,
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="serve every task (SCYTHE_WORKER_* settings); blocks")
    measured = sub.add_parser("run", help="one timed run")
    measured.add_argument("--n", type=int, required=True)
    measured.add_argument("--spin-ms", type=int, choices=sorted(TASKS), default=0)
    measured.add_argument("--bucket", required=True)
    measured.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    if args.command == "worker":
        ScytheWorkerConfig().start()
    else:
        run(args.n, args.spin_ms, args.bucket, args.scratch)


if __name__ == "__main__":
    main()
