"""One contender's run of the common sweep, in a fresh process (driven by ``harness.run_child``).

    python -m benchmarks.contenders --contender NAME --n N --spin-ms MS --workers W \\
        [--bucket B] --scratch EMPTY_DIR

Every contender computes the same thing (``benchmarks.leaves``: 10 float inputs to 10 float
outputs, after ``spin-ms`` of CPU) for leaves 0..n-1, and ends with ONE Parquet table of every
result indexed by the 10 inputs. The clock starts after the contender's library is imported
(its import time is reported on its own) and before its inputs are built and its pool or
cluster is started; it stops when the table is on disk (or in the bucket). The peers hold their
inputs as a list of tuples, as a hand-written sweep does, and write the table themselves
(tuples -> DataFrame -> set_index -> to_parquet); scythe_oo gets a generator of specs and
writes its own ``final/scalars.pq``. Prints one line of JSON: seconds, import seconds, peak RSS
of this process (the driver) and of its largest reaped child, and the table's row count.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import itertools
import math
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from benchmarks.child import emit, peak_rss_mib
from benchmarks.leaves import Row, compute, compute_batch, inputs_of, write_table


@dataclass(frozen=True)
class Sweep:
    """What to run: ``n`` leaves of ``spin_ms`` each on ``workers`` processes."""

    n: int
    spin_ms: int
    workers: int
    scratch: Path
    bucket: str | None = None

    @property
    def spin_s(self) -> float:
        return self.spin_ms / 1000

    @property
    def table(self) -> Path:
        return self.scratch / "table.pq"

    def inputs(self) -> list[Row]:
        return [inputs_of(i) for i in range(self.n)]

    def chunk(self) -> int:
        """Leaves per task for the contenders that batch: 4 batches per worker, as the pool."""
        return max(1, math.ceil(self.n / (4 * self.workers)))


@dataclass
class Outcome:
    """Where the table is (None when it lives in a bucket), its rows, and anything else seen."""

    table: Path | None
    rows: int
    extras: dict[str, Any] = field(default_factory=dict)


def _table(xs: list[Row], ys: list[Row], sweep: Sweep) -> Outcome:
    return Outcome(write_table(xs, ys, sweep.table), len(ys))


# --------------------------------------------------------------------------- peers


def pool(sweep: Sweep) -> Outcome:
    """The bare baseline: ProcessPoolExecutor.map over tuples."""
    xs = sweep.inputs()
    with ProcessPoolExecutor(sweep.workers) as executor:
        spins = itertools.repeat(sweep.spin_s)
        ys = list(executor.map(compute, xs, spins, chunksize=sweep.chunk()))
    return _table(xs, ys, sweep)


def joblib_loky(sweep: Sweep) -> Outcome:
    """joblib's default loky backend with its automatic batching."""
    from joblib import Parallel, delayed  # optional peer (uv sync --group peers)

    xs = sweep.inputs()
    ys = Parallel(n_jobs=sweep.workers, backend="loky")(
        delayed(compute)(x, sweep.spin_s) for x in xs
    )
    return _table(xs, list(ys), sweep)


def dask_bag(sweep: Sweep) -> Outcome:
    """dask.bag with its default partitioning, on the multiprocessing scheduler."""
    import dask.bag as db  # optional peer

    xs = sweep.inputs()
    bag = db.from_sequence(xs).map(compute, spin_s=sweep.spin_s)
    ys = bag.compute(scheduler="processes", num_workers=sweep.workers)
    return _table(xs, list(ys), sweep)


def dask_client(sweep: Sweep) -> Outcome:
    """dask.distributed: a LocalCluster of single-threaded worker processes, client.map."""
    from dask.distributed import Client, LocalCluster  # optional peer

    xs = sweep.inputs()
    with (
        LocalCluster(
            n_workers=sweep.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        futures = client.map(compute, xs, spin_s=sweep.spin_s)
        ys = client.gather(futures)
    return _table(xs, list(ys), sweep)


def _ray_init(workers: int) -> Any:
    import ray  # optional peer

    ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return ray


def ray_tasks(sweep: Sweep) -> Outcome:
    """Ray, one remote task per leaf."""
    ray = _ray_init(sweep.workers)
    try:
        xs = sweep.inputs()
        remote = ray.remote(compute)
        ys = ray.get([remote.remote(x, sweep.spin_s) for x in xs])
    finally:
        ray.shutdown()
    return _table(xs, ys, sweep)


def ray_batched(sweep: Sweep) -> Outcome:
    """Ray, one remote task per batch of leaves (4 batches per worker, as the pool)."""
    ray = _ray_init(sweep.workers)
    try:
        xs = sweep.inputs()
        remote = ray.remote(compute_batch)
        k = sweep.chunk()
        batches = ray.get(
            [remote.remote(xs[i : i + k], sweep.spin_s) for i in range(0, len(xs), k)]
        )
    finally:
        ray.shutdown()
    return _table(xs, [y for batch in batches for y in batch], sweep)


# --------------------------------------------------------------------------- scythe_oo


def _scythe(sweep: Sweep, engine: Any, store: Any, specs: Any = None) -> Outcome:
    """allocate(generator, or ``specs``) -> wait; the table is the run's own
    final/scalars.pq."""
    from benchmarks.experiments import TEN_BY_MS, ten_spec

    cls = TEN_BY_MS[sweep.spin_ms]
    started = time.perf_counter()
    if specs is None:
        specs = (ten_spec(i) for i in range(sweep.n))
    run = cls.allocate(specs, store=store, engine=engine)
    extras = {
        "allocate_s": time.perf_counter() - started,
        "rss_after_allocate_mib": psutil.Process().memory_info().rss / 2**20,
    }
    run.wait(progress=False)
    if run.status != "completed":
        raise RuntimeError(f"run ended as {run.status}")
    local = getattr(store, "root", None)
    table = None if local is None else Path(local) / run.layout.final("scalars")
    return Outcome(table, run.manifest().counts.succeeded, extras)


def scythe_oo(sweep: Sweep) -> Outcome:
    """scythe_oo's LocalEngine(max_workers=workers) on a LocalStore, defaults otherwise."""
    from scythe_oo import LocalEngine, LocalStore

    store = LocalStore(root=sweep.scratch / "store")
    return _scythe(sweep, LocalEngine(max_workers=sweep.workers), store)


def scythe_oo_table(sweep: Sweep) -> Outcome:
    """As ``scythe_oo``, but the inputs are the peers' tuples made into a DataFrame (a sweep
    laid out as a table, from a sampler or a spreadsheet), which allocate takes as columns."""
    import pandas as pd  # imported before the clock, as every contender's table library

    from benchmarks.leaves import INPUTS
    from scythe_oo import LocalEngine, LocalStore

    frame = pd.DataFrame(sweep.inputs(), columns=list(INPUTS))
    store = LocalStore(root=sweep.scratch / "store")
    return _scythe(sweep, LocalEngine(max_workers=sweep.workers), store, frame)


def scythe_oo_hatchet(sweep: Sweep) -> Outcome:
    """scythe_oo's HatchetEngine (workers started by the caller), on a LocalStore, or on S3
    when ``--bucket`` is given (endpoint and credentials from the AWS_* environment)."""
    from scythe_oo import HatchetEngine, LocalStore

    store: Any = LocalStore(root=sweep.scratch / "store")
    if sweep.bucket:
        # Only here: naming S3Store imports boto3, which a LocalStore script never pays for.
        from scythe_oo import S3Store

        store = S3Store(bucket=sweep.bucket, prefix="scythe")
    return _scythe(sweep, HatchetEngine(), store)


def hatchet_plain(sweep: Sweep) -> Outcome:
    """Bare hatchet-sdk, one task per leaf (workers started by the caller)."""
    from hatchet_sdk import Hatchet

    from benchmarks.hatchet_plain import ten_run

    xs = sweep.inputs()
    ys = ten_run(Hatchet(), xs, sweep.spin_s)
    return _table(xs, ys, sweep)


# --------------------------------------------------------------------------- table


Contender = Callable[[Sweep], Outcome]

CONTENDERS: dict[str, Contender] = {
    "pool": pool,
    "joblib": joblib_loky,
    "dask_bag": dask_bag,
    "dask_client": dask_client,
    "ray_tasks": ray_tasks,
    "ray_batched": ray_batched,
    "scythe_oo": scythe_oo,
    "scythe_oo_table": scythe_oo_table,
    "scythe_oo_hatchet": scythe_oo_hatchet,
    "hatchet_plain": hatchet_plain,
}

LIBRARY: dict[str, str] = {
    "pool": "concurrent.futures",
    "joblib": "joblib",
    "dask_bag": "dask.bag",
    "dask_client": "distributed",
    "ray_tasks": "ray",
    "ray_batched": "ray",
    "scythe_oo": "scythe_oo.engines.local",
    "scythe_oo_table": "scythe_oo.engines.local",
    "scythe_oo_hatchet": "scythe_oo.engines.hatchet.engine",
    "hatchet_plain": "hatchet_sdk",
}
"""What each contender imports before the clock starts: what a script names at its top. For
scythe_oo that is the engine's module, which ``from scythe_oo import HatchetEngine`` loads (the
package itself loads its backends lazily; hatchet_sdk takes about 3 s to import here, which
the plain hatchet-sdk contender also imports before its clock)."""


def missing(name: str) -> str | None:
    """Why ``name`` cannot run here (its library is not installed), or None."""
    top = LIBRARY[name].split(".")[0]
    if importlib.util.find_spec(top) is None:
        return f"{top} is not installed (uv sync --group peers)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contender", choices=sorted(CONTENDERS), required=True)
    parser.add_argument("--n", type=int, required=True)
    parser.add_argument("--spin-ms", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bucket", default=None, help="scythe_oo_hatchet: an S3Store bucket")
    parser.add_argument("--scratch", type=Path, required=True)
    args = parser.parse_args()

    started = time.perf_counter()
    # Whatever the user's script imports at its top is outside the clock, for every contender:
    # pandas and pyarrow (the table), the contender's library, and scythe_oo's experiments.
    for module in ("pandas", "pyarrow.parquet", LIBRARY[args.contender]):
        importlib.import_module(module)
    if args.contender.startswith("scythe_oo"):
        importlib.import_module("benchmarks.experiments")
    if args.bucket:
        importlib.import_module("scythe_oo.storage.s3")  # boto3, as `from scythe_oo import S3Store`
    imported = time.perf_counter() - started

    sweep = Sweep(args.n, args.spin_ms, args.workers, args.scratch, args.bucket)
    started = time.perf_counter()
    outcome = CONTENDERS[args.contender](sweep)
    seconds = time.perf_counter() - started
    if outcome.rows != args.n:
        raise RuntimeError(f"{args.contender}: {outcome.rows} rows, expected {args.n}")
    emit(
        {
            "seconds": seconds,
            "import_s": imported,
            **peak_rss_mib(),
            "rows": outcome.rows,
            "parquet_bytes": None if outcome.table is None else outcome.table.stat().st_size,
            **outcome.extras,
        }
    )


if __name__ == "__main__":
    main()
