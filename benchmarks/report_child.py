"""The report at scale: build a synthetic 10^6-row run folder, or report on one, in its own
process so that the report's peak RSS is its own.

    python -m benchmarks.report_child --build --root DIR --n N --scratch EMPTY_DIR
    python -m benchmarks.report_child --root DIR --scratch EMPTY_DIR

Running 10^6 leaves only to get their tables would take the benchmark minutes that measure
something else (``gather_scale`` does), so ``--build`` writes the final tables directly, through
the framework's own Parquet sink and pandas metadata, in the shape a real run has: ten inputs
(floats, ints, two strings, one with a distinct value per row, and a Literal), ten outputs,
2% failures of three kinds, leaf_stats for every spec and a Sobol design in the manifest.
Without ``--build`` it writes the run's report and prints one line of JSON: seconds, peak RSS.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import time
import uuid
from pathlib import Path

import numpy as np
import pyarrow as pa

from scythe_oo import ExperimentRun, LocalStore
from scythe_oo.driver.allocate import create_run_folder
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest, ManifestFile
from scythe_oo.runfolder.tables import pandas_index_metadata, parquet_sink

CHUNK = 100_000
FAILED_SHARE = 0.02
INPUTS = ["f0", "f1", "f2", "f3", "i0", "i1", "i2", "s0", "s1", "mode"]
ERRORS = [
    ("ValueError", "the model diverged at step 812: residual 3.1e+08 > 1e+06"),
    ("TimeoutError", "leaf exceeded its execution timeout of 300 s"),
    ("KeyError", "'weather station USA_MA_Boston.Logan missing from the cache'"),
]


def _inputs(rng: np.random.Generator, first: int, count: int) -> dict[str, pa.Array]:
    index = np.arange(first, first + count)
    u = rng.random((count, 7))
    return {
        "f0": pa.array(u[:, 0] * 10),
        "f1": pa.array(u[:, 1]),
        "f2": pa.array(u[:, 2] * 100 - 50),
        "f3": pa.array(np.exp(u[:, 3] * 6)),
        "i0": pa.array((u[:, 4] * 1000).astype(np.int64)),
        "i1": pa.array((u[:, 5] * 12 + 1).astype(np.int64)),
        "i2": pa.array(index // 3),
        "s0": pa.array([f"site-{i % 500}" for i in index]),
        "s1": pa.array([f"case-{i}" for i in index]),
        "mode": pa.array(np.array(["a", "b", "c"])[(u[:, 6] * 3).astype(np.int64)]),
    }


def _index(layout: RunLayout, run_id: str, first: int, count: int) -> dict[str, pa.Array]:
    return {
        "experiment_id": pa.array([layout.experiment_id] * count, type=pa.string()),
        "sort_index": pa.array(np.arange(first, first + count), type=pa.int64()),
        "root_workflow_run_id": pa.array([run_id] * count, type=pa.string()),
    }


def build(root: Path, n: int) -> str:
    """A finished run folder with ``n`` successful rows; prints and returns its URI."""
    store = LocalStore(root)
    failed = round(n * FAILED_SHARE)
    total = n + failed
    run_id = str(uuid.uuid4())
    design = {
        "method": "sobol",
        "n": total,
        "seed": 0,
        "input_class": "benchmarks.report_child:Synthetic",
        "dimensions": {name: {"kind": "real", "range": "[0, 1]", "log": False} for name in INPUTS},
    }
    manifest = Manifest(
        experiment_name="bench_report",
        experiment_class="benchmarks.report_child:Synthetic",
        version="v1.0.0",
        workflow_run_id=run_id,
        engine={"kind": "local", "max_workers": "2"},
        store=store.describe(),
        recursion={},
        n_specs=total,
        design=design,
    )
    folder, manifest = create_run_folder(store, manifest, lambda layout: None)
    layout = folder.layout
    rng = np.random.default_rng(0)
    levels = ["experiment_id", "sort_index", "root_workflow_run_id", *INPUTS]
    # specs 0..total-1; every 50th is a failure
    positions = np.arange(total)
    is_failed = positions % round(1 / FAILED_SHARE) == 7
    ok_positions, bad_positions = positions[~is_failed][:n], positions[is_failed][:failed]
    started = time.time() - total * 0.02 / 2  # 2 workers, 20 ms a leaf

    def table(name: str, block: np.ndarray) -> pa.Table:
        count = len(block)
        columns = _index(layout, run_id, 0, count)
        columns["sort_index"] = pa.array(block, type=pa.int64())
        inputs = _inputs(rng, int(block[0]), count)
        outputs = _columns(name, inputs, block, count, rng, started)
        return pa.table({**outputs, **columns, **inputs})

    def tables(name: str, chosen: np.ndarray) -> None:
        chunks = (table(name, chosen[i : i + CHUNK]) for i in range(0, len(chosen), CHUNK))
        first = next(chunks)
        schema = first.schema.with_metadata(pandas_index_metadata(first.schema, levels))
        with parquet_sink(store, layout.final(name), schema) as writer:
            for chunk in itertools.chain([first], chunks):
                writer.write_table(chunk.replace_schema_metadata(schema.metadata))

    tables("scalars", ok_positions)
    tables("failures", bad_positions)
    tables("leaf_stats", positions)
    ManifestFile(store, layout).finished(n, failed)
    uri = store.uri(layout.root)
    print(json.dumps({"uri": uri, "rows": n, "failed": failed}))
    return uri


def _columns(
    name: str,
    inputs: dict[str, pa.Array],
    block: np.ndarray,
    count: int,
    rng: np.random.Generator,
    started: float,
) -> dict[str, pa.Array]:
    f = {k: inputs[k].to_numpy(zero_copy_only=False) for k in ("f0", "f1", "f2", "f3", "i1")}
    if name == "scalars":
        noise = rng.normal(size=count)
        return {
            "o0": pa.array(f["f0"] + f["f1"]),
            "o1": pa.array(f["f1"] * 2 + noise * 0.1),
            "o2": pa.array(np.sin(f["f2"] / 10) * f["f0"]),
            "o3": pa.array(np.log(f["f3"]) + noise),
            "o4": pa.array(f["f0"] * f["f2"]),
            "o5": pa.array(f["i1"].astype(float) ** 2),
            "o6": pa.array((f["f0"] * 100).astype(np.int64)),
            "o7": pa.array(f["i1"] * 2),
            "o8": pa.array(block % 7),
            "o9": pa.array(rng.poisson(3, size=count)),
        }
    if name == "failures":
        kinds = block % len(ERRORS)
        return {
            "error_type": pa.array([ERRORS[k][0] for k in kinds]),
            "error_message": pa.array([ERRORS[k][1] for k in kinds]),
            "traceback": pa.array(["Traceback (most recent call last):\n  ..."] * count),
            "attempts": pa.array(np.ones(count, dtype=np.int64)),
            "worker": pa.array(["local-bench"] * count),
            "wall_time": pa.array(rng.gamma(4, 0.005, size=count)),
        }
    finished = started + block * 0.01 + rng.random(count) * 0.01
    return {
        "ok": pa.array(block % round(1 / FAILED_SHARE) != 7),
        "wall_time": pa.array(rng.gamma(4, 0.005, size=count)),
        "peak_rss_mib": pa.array(150 + rng.gamma(2, 5, size=count)),
        "attempts": pa.array(np.ones(count, dtype=np.int64)),
        "worker": pa.array([f"local-bench-{i % 2}" for i in block]),
        "finished_at": pa.array((finished * 1e6).astype(np.int64), type=pa.timestamp("us", "UTC")),
    }


def report(root: Path, scratch: Path) -> None:
    store = LocalStore(root)
    uri = next(p for p in root.rglob("manifest.yml")).parent.as_uri()
    run = ExperimentRun.open(uri, store=store)
    started = time.perf_counter()
    path = run.report(scratch / "report.html")
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mib": peak,
                "html_mib": path.stat().st_size / 2**20,
                "rows": run.manifest().counts.succeeded,
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", action="store_true")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--scratch", type=Path, required=True)
    args = parser.parse_args()
    if args.build:
        build(args.root, args.n)
    else:
        report(args.root, args.scratch)


if __name__ == "__main__":
    main()
