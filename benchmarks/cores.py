"""LocalEngine against the bare ProcessPoolExecutor at 2, 4, 8 and 16 workers (issue 15, goal 2).

    .venv/bin/python -m benchmarks.cores              # 16-core sizes, 3 repeats (< 8 min there)
    .venv/bin/python -m benchmarks.cores --small      # 2-core sizes (oversubscribed at 8, 16)
    .venv/bin/python -m benchmarks.cores --quick      # seconds: tiny sizes, 2 and 4 workers

For no-op, 2 ms and 20 ms leaves (``benchmarks.leaves``), each measured in a fresh process as in
peers.py: throughput (leaves/s) and, for leaves that do work, efficiency = ideal / wall time,
where ideal = n x leaf CPU / min(workers, CPUs). The ratio scythe_oo/pool of efficiencies is
pool time / scythe_oo time. Sizes grow with the workers so that every run does about the same
ideal time (2 s at the default sizes). Needs nothing but the repo's .venv and no network, so
it can be run unattended on a bigger machine as one script.

Goals it checks: no-op throughput grows with workers up to 16; 2 ms leaves reach >= 0.9 of the
pool's efficiency at 16 workers; 10^6 no-op leaves on 16 workers take <= 3x the pool's time.
"""

from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import Report, common_arguments, publish, run_child
from benchmarks.matrix import Case, Results, as_json, best, run_matrix

CONTENDERS = ["pool", "scythe_oo"]
LEAVES = {"noop": 0, "2ms": 2, "20ms": 20}
RESULTS = Path(__file__).resolve().parent / "results" / "cores.json"


class Sizes:
    """Leaves per run: no-op runs are a fixed size, working leaves grow with the workers."""

    def __init__(self, noop: int, per_worker: dict[int, int], big_noop: int | None) -> None:
        self.noop = noop
        self.per_worker = per_worker
        self.big_noop = big_noop

    def n(self, spin_ms: int, workers: int) -> int:
        return self.noop if spin_ms == 0 else self.per_worker[spin_ms] * workers


SIZES = {
    # 16 cores: 2 s of ideal time per working run; 10^6 no-op at the largest worker count.
    "full": Sizes(200_000, {2: 1_000, 20: 100}, 1_000_000),
    # 2 cores: runs at 8 and 16 workers are oversubscribed, so ideal time is n x leaf / 2.
    "small": Sizes(20_000, {2: 250, 20: 25}, 100_000),
    "quick": Sizes(2_000, {2: 50, 20: 5}, None),
}


def build_cases(sizes: Sizes, workers: list[int], leaves: list[str]) -> list[Case]:
    cases = [
        Case(n=sizes.n(LEAVES[leaf], w), spin_ms=LEAVES[leaf], workers=w)
        for leaf in leaves
        for w in workers
    ]
    if sizes.big_noop and "noop" in leaves:
        cases.append(Case(n=sizes.big_noop, spin_ms=0, workers=max(workers)))
    return cases


def ideal_s(case: Case, cpus: int) -> float:
    """The leaves' CPU spread perfectly over the cores that can serve them."""
    return case.n * case.spin_ms / 1000 / min(case.workers, cpus)


def rows(results: Results, cases: list[Case], cpus: int) -> list[dict[str, Any]]:
    """One row per case: both sides' best time, throughput, efficiency and the ratio."""
    out = []
    for case in cases:
        pool, fw = best(results, case, "pool"), best(results, case, "scythe_oo")
        row: dict[str, Any] = {
            "leaf": case.leaf,
            "workers": case.workers,
            "n": case.n,
            "pool_s": pool,
            "scythe_oo_s": fw,
            "pool_leaves_per_s": None if pool is None else case.n / pool,
            "scythe_oo_leaves_per_s": None if fw is None else case.n / fw,
            "ratio_time": None if pool is None or fw is None else fw / pool,
        }
        if case.spin_ms:
            ideal = ideal_s(case, cpus)
            row["pool_efficiency"] = None if pool is None else ideal / pool
            row["scythe_oo_efficiency"] = None if fw is None else ideal / fw
            row["efficiency_ratio"] = None if pool is None or fw is None else pool / fw
        out.append(row)
    return out


def goals(table: list[dict[str, Any]], workers: list[int], big_noop: int | None) -> list[str]:
    """The three goals of issue 15's goal 2, as far as this run measured them."""
    lines = []
    top = max(workers)
    noop = [r for r in table if r["leaf"] == "no-op" and (big_noop is None or r["n"] != big_noop)]
    rates = [r["scythe_oo_leaves_per_s"] for r in sorted(noop, key=lambda r: r["workers"])]
    if len(rates) > 1 and None not in rates:
        grows = all(b > a for a, b in itertools.pairwise(rates))
        shown = " -> ".join(f"{r:,.0f}" for r in rates)
        lines.append(f"goal: no-op throughput grows with workers: {shown} leaves/s ({grows=})")
    for r in table:
        if r["leaf"] == "2 ms" and r["workers"] == top and r.get("efficiency_ratio"):
            met = "met" if r["efficiency_ratio"] >= 0.9 else "NOT met"
            lines.append(
                f"goal: 2 ms efficiency >= 0.9 x pool's at {top} workers: "
                f"{r['efficiency_ratio']:.2f} ({met})"
            )
        if big_noop and r["leaf"] == "no-op" and r["n"] == big_noop and r["ratio_time"]:
            met = "met" if r["ratio_time"] <= 3 else "NOT met"
            lines.append(
                f"goal: {big_noop:,} no-op on {r['workers']} workers <= 3x pool: "
                f"{r['ratio_time']:.2f} ({met})"
            )
    return lines


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--small", action="store_true", help="2-core sizes")
    size.add_argument("--quick", action="store_true", help="tiny sizes, 2 and 4 workers, 1 repeat")
    parser.add_argument("--workers", type=int, nargs="+", help="default 2 4 8 16")
    parser.add_argument("--leaves", nargs="+", choices=sorted(LEAVES), default=list(LEAVES))
    common_arguments(parser, cap_s=300, results=RESULTS)
    args = parser.parse_args(argv)

    sizes = SIZES["quick" if args.quick else "small" if args.small else "full"]
    workers = args.workers or ([2, 4] if args.quick else [2, 4, 8, 16])
    repeats = args.repeats or (1 if args.quick else 3)
    cases = build_cases(sizes, workers, args.leaves)
    cpus = os.cpu_count() or 1
    if max(workers) > cpus:
        print(f"note: {cpus} CPUs here; runs with more workers than that are oversubscribed")

    def measure(case: Case, name: str) -> Report:
        return run_child(
            "benchmarks.contenders", ["--contender", name, *case.args()], timeout=args.cap_s
        )

    started = time.perf_counter()
    results = run_matrix(cases, CONTENDERS, repeats, measure)
    table = rows(results, cases, cpus)
    header = [
        "leaf", "workers", "n", "pool s", "scythe_oo s", "pool leaves/s", "scythe_oo leaves/s",
        "pool eff", "scythe_oo eff", "eff ratio",
    ]  # fmt: skip
    lines = [
        [
            r["leaf"],
            str(r["workers"]),
            f"{r['n']:,}",
            fmt(r["pool_s"], ".2f"),
            fmt(r["scythe_oo_s"], ".2f"),
            fmt(r["pool_leaves_per_s"], ",.0f"),
            fmt(r["scythe_oo_leaves_per_s"], ",.0f"),
            fmt(r.get("pool_efficiency"), ".2f"),
            fmt(r.get("scythe_oo_efficiency"), ".2f"),
            fmt(r.get("efficiency_ratio"), ".2f"),
        ]
        for r in table
    ]
    publish(
        args.json,
        "cores",
        f"best of {repeats}; {cpus} CPUs; efficiency = n x leaf / min(workers, CPUs) / wall",
        (header, lines),
        goals(table, workers, sizes.big_noop),
        {
            "sizes": "quick" if args.quick else "small" if args.small else "full",
            "repeats": repeats,
            "cpus": cpus,
            "elapsed_s": round(time.perf_counter() - started, 1),
            "rows": table,
            "results": as_json(results, cases, CONTENDERS),
        },
        argv,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
