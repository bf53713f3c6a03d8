"""scythe_oo's LocalEngine against the usual ways of running a sweep on one machine (issue 15).

    .venv/bin/python -m benchmarks.peers                     # the issue's table (~30-40 min)
    .venv/bin/python -m benchmarks.peers --quick             # tiny sizes, 1 repeat (~1-2 min)
    .venv/bin/python -m benchmarks.peers --contenders pool scythe_oo --cases 100000

Contenders: the bare ProcessPoolExecutor (tuples, then DataFrame + Parquet), joblib (loky),
dask.bag, dask.distributed client.map, ray one task per leaf, ray batched, and scythe_oo's
LocalEngine. Every one computes the same leaves (``benchmarks.leaves``) and ends with the same
Parquet table indexed by the 10 inputs; each measurement is a fresh process (see
``benchmarks.contenders`` for what the clock covers). Contenders alternate within every repeat;
the table gives the min and, in brackets, the median of the repeats.

The peers are an optional dependency group (``uv sync --group peers``); a peer that is not
installed is skipped and the report says so. By default the slowest peers are not run above
10^5 leaves (``--no-limits`` runs them anyway): at 10^6 each would take many minutes to hours.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from typing import Any

from benchmarks.contenders import missing
from benchmarks.harness import Report, common_arguments, publish, run_child
from benchmarks.matrix import Case, as_json, best, case_arguments, cell, parse_case, run_matrix

PEERS = [
    "pool",
    "joblib",
    "dask_bag",
    "dask_client",
    "ray_tasks",
    "ray_batched",
    "scythe_oo",
    "scythe_oo_table",
]
LABELS = {
    "pool": "ProcessPoolExecutor, tuples, then DataFrame + Parquet",
    "joblib": "joblib (loky)",
    "dask_bag": "dask.bag",
    "dask_client": "dask.distributed client.map",
    "ray_tasks": "ray, one task per leaf",
    "ray_batched": "ray, batched tasks",
    "scythe_oo": "scythe_oo LocalEngine, a generator of specs",
    "scythe_oo_table": "scythe_oo LocalEngine, the tuples as a DataFrame",
}
FULL_CASES = ["20000", "100000", "1000000", "2000x20ms"]
QUICK_CASES = ["2000", "200x20ms"]
MAX_N = {"joblib": 100_000, "dask_client": 100_000, "ray_tasks": 100_000, "ray_batched": 100_000}
"""Above these sizes a peer is left out unless --no-limits (the issue's table has '-' there)."""
RESULTS = Path(__file__).resolve().parent / "results" / "peers.json"


def goal_lines(results: Any, cases: list[Case]) -> list[str]:
    """Goal 1 of issue 15, where this run measured it: at 10^5 no-op leaves on 2 workers,
    scythe_oo's time <= joblib's and <= 2x the bare pool's (best of the repeats)."""
    lines = []
    for case in cases:
        if case.n != 100_000 or case.spin_ms != 0 or case.key not in results:
            continue
        measured = results[case.key]
        for ours, (peer, factor) in itertools.product(
            ("scythe_oo", "scythe_oo_table"), (("joblib", 1.0), ("pool", 2.0))
        ):
            fw = best(results, case, ours) if ours in measured else None
            other = best(results, case, peer) if peer in measured else None
            goal = f"goal: {ours} <= {factor:g} x {peer} at 10^5"
            if fw is None or other is None:
                lines.append(f"{goal}: not measured")
                continue
            ratio = fw / other
            lines.append(f"{goal}: {ratio:.2f} ({'met' if ratio <= factor else 'NOT met'})")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    case_arguments(parser, FULL_CASES, QUICK_CASES, PEERS)
    common_arguments(parser, cap_s=900, results=RESULTS)
    parser.add_argument("--workers", type=int, default=2, help="processes per contender")
    parser.add_argument("--no-limits", action="store_true", help="run every peer at every size")
    args = parser.parse_args(argv)

    cases = [
        parse_case(c, args.workers)
        for c in args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    ]
    repeats = args.repeats or (1 if args.quick else 3)
    absent = {name: why for name in args.contenders if (why := missing(name)) is not None}
    for name, why in absent.items():
        print(f"skipping {name}: {why}")

    def allowed(case: Case, name: str, repeat: int) -> str | None:
        if name in absent:
            return absent[name]
        limit = MAX_N.get(name)
        if limit is not None and case.n > limit and not args.no_limits:
            return f"left out above {limit:,} leaves (--no-limits runs it)"
        return None

    def measure(case: Case, name: str) -> Report:
        return run_child(
            "benchmarks.contenders", ["--contender", name, *case.args()], timeout=args.cap_s
        )

    started = time.perf_counter()
    results = run_matrix(cases, args.contenders, repeats, measure, allowed=allowed)
    header = ["contender", *[c.label for c in cases]]
    lines = [
        [LABELS[name], *[cell(results[case.key][name]) for case in cases]]
        for name in args.contenders
    ]
    publish(
        args.json,
        "peers",
        f"{args.workers} workers; min (median) of {repeats}; wall time to one Parquet table",
        (header, lines),
        goal_lines(results, cases),
        {
            "quick": args.quick,
            "repeats": repeats,
            "workers": args.workers,
            "cap_s": args.cap_s,
            "not_installed": absent,
            "elapsed_s": round(time.perf_counter() - started, 1),
            "results": as_json(results, cases, args.contenders),
        },
        argv,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
