"""allocate's checking pass with and without forked helpers (issue 15: the driver is never the
bottleneck).

    .venv/bin/python -m benchmarks.prepare                       # 10^5 and 10^6 specs, 3 repeats
    .venv/bin/python -m benchmarks.prepare --n 1000000 --repeats 5

Each measurement is a fresh process that builds ``BenchTen`` specs in a generator and hands
them to ``prepare_specs`` (validation and encoding, everything allocate does before it writes),
with ``processes=0`` (the caller's process alone) or the default (forked helpers once the sweep
passes ``HELPERS_AFTER`` groups). The two alternate within each repeat; the table gives the min
and, in brackets, the median, and the ratio of the mins is the helpers' gain.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import Report, common_arguments, fmt_s, publish, run_child

RESULTS = Path(__file__).resolve().parent / "results" / "prepare.json"
MODES = {"one process": "0", "helpers": "auto"}


def child(n: int, processes: str) -> Report:
    import pandas  # noqa: F401  (what a user's script has loaded: outside the clock)

    from benchmarks.experiments import BenchTen, ten_spec
    from scythe_oo.driver.prepare import prepare_specs
    from scythe_oo.driver.sources import spec_chunks

    specs = (ten_spec(i) for i in range(n))
    with tempfile.TemporaryDirectory(prefix="scythe-bench-prepare-") as staging:
        started = time.perf_counter()
        prepared = prepare_specs(
            BenchTen,
            spec_chunks(BenchTen, specs),
            Path(staging),
            processes=None if processes == "auto" else int(processes),
        )
        seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "rows": prepared.count,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "minor_faults": usage.ru_minflt,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--processes", default="auto", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    common_arguments(parser, cap_s=600, results=RESULTS)
    args = parser.parse_args(argv)
    if args.child:
        import json

        print(json.dumps(child(args.n[0], args.processes)))
        sys.stdout.flush()
        return 0

    repeats = args.repeats or 3
    results: dict[int, dict[str, list[float]]] = {}
    for n in args.n:
        results[n] = {mode: [] for mode in MODES}
        for repeat in range(repeats):
            for mode, processes in MODES.items():
                report = run_child(
                    "benchmarks.prepare",
                    ["--child", "--n", str(n), "--processes", processes],
                    timeout=args.cap_s,
                )
                if report.get("rows") != n:
                    raise RuntimeError(f"{mode}: {report}")
                results[n][mode].append(report["seconds"])
                print(f"[{repeat + 1}/{repeats}] {n:,} specs, {mode}: {fmt_s(report['seconds'])}")

    def cell(values: list[float]) -> str:
        ordered = sorted(values)
        return f"{fmt_s(ordered[0])} ({fmt_s(ordered[len(ordered) // 2])})"

    header = ["specs from a generator", *MODES, "helpers / one process (min)"]
    lines = [
        [
            f"{n:,}",
            *(cell(results[n][mode]) for mode in MODES),
            f"{min(results[n]['helpers']) / min(results[n]['one process']):.2f}",
        ]
        for n in args.n
    ]
    publish(
        args.json,
        "prepare",
        f"allocate's checking pass (build, validate, encode); min (median) of {repeats}",
        (header, lines),
        [],
        {"repeats": repeats, "results": {str(n): v for n, v in results.items()}},
        argv,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
