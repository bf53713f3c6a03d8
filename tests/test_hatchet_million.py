"""10^6 specs from a generator through HatchetEngine's scatter, in CI time (issue 15, goal 3).

The driver is a process of its own, so that its peak RSS is the run's alone (the test
process has loaded everything other tests did). The leaves are the benchmarks' no-op leaf: 10
float inputs, 10 float outputs. What is checked is that the sweep runs end to end through two
workers and the local engine, that ``final/scalars.pq`` holds every spec once with the right
outputs, and that the driver stayed under 1 GiB. No timing is asserted; the wall time is
printed (benchmarks/huge.py is the benchmark).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from tests.test_hatchet_engine import StartWorker

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(1200)]

N = 1_000_000
ROOT = Path(__file__).resolve().parent.parent

DRIVER = """
import json, resource, sys, time
from scythe_oo import HatchetEngine, LocalStore
from benchmarks.experiments import BenchTen, ten_spec

n, root = int(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
specs = (ten_spec(i) for i in range(n))
run = BenchTen.allocate(specs, store=LocalStore(root), engine=HatchetEngine())
allocated = time.perf_counter() - started
run.wait(timeout=1000, progress=False)
print(json.dumps({
    "status": run.status,
    "final": str(run.layout.final("scalars")),
    "allocate_s": round(allocated, 1),
    "wall_s": round(time.perf_counter() - started, 1),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def test_a_million_specs_from_a_generator(start_worker: StartWorker, tmp_path: Path) -> None:
    workers = [
        start_worker(f"million{i}", modules=("benchmarks.experiments",), slots="8")
        for i in range(2)
    ]
    store = tmp_path / "store"
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(N), str(store)],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=1100,
        check=False,
    )
    logs = "\n".join(f"--- {w.name}:\n{w.log_tail(10)}" for w in workers)
    assert done.returncode == 0, f"{done.stderr[-3000:]}\n{logs}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\n{N:,} specs through HatchetEngine: {report}")
    assert report["status"] == "completed", logs

    table = pq.read_table(store / report["final"], columns=["sort_index", "x0", "y0", "y9"])
    assert table.num_rows == N
    index = table.column("sort_index").to_numpy()
    assert np.array_equal(np.sort(index), np.arange(N))
    # y_j = 2 x_j + 1, and x0 = i, x9 = i + 0.9
    assert pc.all(pc.equal(table.column("y0"), pc.add(pc.multiply(table.column("x0"), 2), 1)))
    expected_y9 = 2.0 * (index.astype(np.float64) + 0.9) + 1.0
    assert np.allclose(table.column("y9").to_numpy(), expected_y9)
    assert report["peak_rss_mib"] < 1024, report
