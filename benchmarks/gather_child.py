"""One measured run in a fresh process, so its peak RSS is its own and nobody else's.

    python -m benchmarks.gather_child --side framework|baseline --experiment wide|noop --n N \\
        --scratch EMPTY_DIR

Both sides build the same specs the same way, then run the same leaf function over them on two
processes and end with a Parquet table of every result on disk. The clock starts after the
specs exist (a user holds them either way) and stops when the table is written. Prints one line
of JSON: wall seconds, the peak RSS of this process (the driver) and of its largest reaped child
(a pool worker), and the RSS already taken by the specs themselves.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import psutil

from benchmarks.child import emit, peak_rss_mib
from benchmarks.experiments import BenchNoop, BenchWide, NoopInput, noop, wide, wide_spec
from scythe_oo import (
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LocalEngine,
    LocalStore,
    RecursionPolicy,
)

EXPERIMENTS = {
    "wide": (BenchWide, wide_spec, wide),
    "noop": (BenchNoop, lambda i: NoopInput(x=float(i)), noop),
}


def run_framework(
    kind: str, specs: list[Any], engine: LocalEngine, recursion: RecursionPolicy, root: Path
) -> int:
    cls = EXPERIMENTS[kind][0]
    run = cls.allocate(specs, store=LocalStore(root=root), engine=engine, recursion=recursion)
    specs.clear()  # the caller's list is no longer needed; the run reads specs.pq
    run.wait(progress=False)
    if run.status != "completed":
        raise RuntimeError(f"run ended as {run.status}")
    return (root / run.layout.final("scalars")).stat().st_size


def run_baseline(kind: str, specs: list[Any], workers: int, out: Path) -> int:
    """The common hand-written approach: a one-row DataFrame per result, then pandas.concat."""
    import pandas as pd

    fn = EXPERIMENTS[kind][2]
    spec_type = type(specs[0])
    inputs = [f for f in spec_type.model_fields if f not in ExperimentInputSpec.model_fields]
    with ProcessPoolExecutor(workers) as pool:
        results = list(pool.map(fn, specs, chunksize=max(1, len(specs) // (4 * workers))))
    out_type = type(results[0])
    outputs = [f for f in out_type.model_fields if f not in ExperimentOutputSpec.model_fields]
    frames = [
        pd.DataFrame(
            [[getattr(result, f) for f in outputs]],
            columns=outputs,
            index=pd.MultiIndex.from_tuples(
                [tuple(getattr(spec, f) for f in inputs)], names=inputs
            ),
        )
        for spec, result in zip(specs, results, strict=True)
    ]
    table = pd.concat(frames)
    table.to_parquet(out, compression="zstd")
    return out.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", choices=["framework", "baseline"], required=True)
    parser.add_argument("--experiment", choices=sorted(EXPERIMENTS), default="wide")
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--max-depth", type=int, default=3)
    parser.add_argument(
        "--split-above",
        type=int,
        default=LocalEngine().split_above,
        help="LocalEngine(split_above=...); 0 follows the recursion policy exactly",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        required=True,
        help="empty directory for the run; the caller removes it, even after a kill",
    )
    args = parser.parse_args()

    make = EXPERIMENTS[args.experiment][1]
    specs = [make(i) for i in range(args.n)]
    rss_specs = psutil.Process().memory_info().rss
    started = time.perf_counter()
    if args.side == "framework":
        recursion = RecursionPolicy(factor=args.factor, max_depth=args.max_depth)
        engine = LocalEngine(max_workers=args.workers, split_above=args.split_above)
        size = run_framework(args.experiment, specs, engine, recursion, args.scratch)
    else:
        size = run_baseline(args.experiment, specs, args.workers, args.scratch / "scalars.pq")
    seconds = time.perf_counter() - started
    emit(
        {
            "seconds": seconds,
            **peak_rss_mib(),
            "specs_rss_mib": rss_specs / 2**20,
            "parquet_bytes": size,
        }
    )


if __name__ == "__main__":
    main()
