"""Benchmarks of scythe_oo against hand-written baselines, measured side by side in one run.

    .venv/bin/python -m benchmarks.run [--quick] [--only NAME ...]

Every benchmark measures the framework and its baseline in the same invocation, interleaved and
repeated where that is affordable, so a busy machine slows both sides alike and the ratio stays
meaningful even when the absolute times do not. Prints a table and merges the figures into
benchmarks/results.json (one entry per benchmark, each with its own date and size).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.experiments import BenchNoop, NoopInput, noop
from benchmarks.harness import (
    CHILD_TIMEOUT,
    ROOT,
    environment,
    format_table,
    hatchet_env,
    machine,
    new_namespace,
    run_child,
    scythe_worker,
    workers,
)
from scythe_oo import LocalEngine, LocalStore, RecursionPolicy

RESULTS = Path(__file__).resolve().parent / "results.json"
WORKERS = 2
GATHER_CHILD = "benchmarks.gather_child"

Row = dict[str, Any]


def row(
    metric: str,
    framework: Any,
    baseline: Any,
    ratio: float | None,
    target: str,
    upper_bound: bool = False,
) -> Row:
    """One line of the table. ``met`` is None when it cannot be told: a side did not finish,
    or ``ratio`` is only an upper bound (the baseline was stopped) that misses the target."""
    if ratio is None:
        met = None
    elif target.startswith(">="):
        met = ratio >= float(target[2:])
    else:
        met = ratio <= float(target[2:])
        if upper_bound and not met:
            met = None
    return {
        "metric": metric,
        "framework": framework,
        "baseline": baseline,
        "ratio": ratio,
        "target": target,
        "met": met,
    }


def _fmt_side(report: dict[str, Any], key: str, unit: str) -> str:
    if report.get("stopped"):
        return f"stopped ({report['stopped']}, RSS >= {report['sampled_peak_rss_mib']:.0f} MiB)"
    if report.get("error"):
        return "error"
    return f"{report[key]:.1f} {unit}"


# --------------------------------------------------------------------------- 1. local_overhead


def _framework_seconds(specs: list[NoopInput]) -> float:
    with tempfile.TemporaryDirectory(prefix="scythe-bench-") as root:
        started = time.perf_counter()
        run = BenchNoop.allocate(
            specs, store=LocalStore(root=root), engine=LocalEngine(max_workers=WORKERS)
        )
        run.wait(progress=False)
        seconds = time.perf_counter() - started
        assert run.status == "completed", run.status
    return seconds


def _pool_seconds(specs: list[NoopInput]) -> float:
    started = time.perf_counter()
    with ProcessPoolExecutor(WORKERS) as pool:
        chunksize = max(1, len(specs) // (4 * WORKERS))
        results = list(pool.map(noop, specs, chunksize=chunksize))
    seconds = time.perf_counter() - started
    assert len(results) == len(specs)
    return seconds


def local_overhead(quick: bool) -> dict[str, Any]:
    """20,000 no-op leaves: allocate->wait against a bare ProcessPoolExecutor.map of the same
    function over the same spec objects. Best of 3, the two sides interleaved."""
    n, reps = 20_000, 1 if quick else 3
    specs = [NoopInput(x=float(i)) for i in range(n)]
    framework, baseline = [], []
    for _ in range(reps):
        baseline.append(_pool_seconds(specs))
        framework.append(_framework_seconds(specs))
    fw, base = min(framework), min(baseline)
    return {
        "n": n,
        "repeats": reps,
        "framework_s": framework,
        "baseline_s": baseline,
        "rows": [row("seconds (best)", round(fw, 3), round(base, 3), fw / base, "<=1.5")],
    }


# --------------------------------------------------------------------------- 2. gather_scale


def gather_scale(quick: bool) -> dict[str, Any]:
    """10^6 leaves with 10 inputs and 10 scalar outputs gathered to one Parquet table through a
    3-level tree, against one-row DataFrames + pandas.concat. Each side in its own process."""
    n = 100_000 if quick else 1_000_000
    # split_above=0: the whole 3-level tree (1,111 nodes at 10^6), not the shallower one
    # LocalEngine would choose, so the merge is exercised at every level.
    tree = ["--factor", "10", "--max-depth", "3", "--split-above", "0"]
    common = ["--experiment", "wide", "--n", str(n), *tree]
    framework = run_child(GATHER_CHILD, ["--side", "framework", *common])
    baseline = run_child(GATHER_CHILD, ["--side", "baseline", *common])

    def ratio(key: str) -> float | None:
        """framework / baseline; an upper bound when the baseline was stopped unfinished."""
        if framework.get("seconds") is None:
            return None
        if baseline.get("stopped"):  # it needed at least this long and this much memory
            bound = baseline["stopped_after_s" if key == "seconds" else "sampled_peak_rss_mib"]
            return float(framework[key]) / float(bound)
        if baseline.get("seconds") is None:
            return None
        return float(framework[key]) / float(baseline[key])

    bound = " (ratio: upper bound)" if baseline.get("stopped") else ""
    rows = [
        row(
            "driver peak RSS" + bound,
            _fmt_side(framework, "peak_rss_mib", "MiB"),
            _fmt_side(baseline, "peak_rss_mib", "MiB"),
            ratio("peak_rss_mib"),
            "<=0.333",
            upper_bound=bool(bound),
        ),
        row(
            "seconds" + bound,
            _fmt_side(framework, "seconds", "s"),
            _fmt_side(baseline, "seconds", "s"),
            ratio("seconds"),
            "<=1.0",
            upper_bound=bool(bound),
        ),
    ]
    return {"n": n, "framework": framework, "baseline": baseline, "rows": rows}


# --------------------------------------------------------------------------- 3. scaling


def scaling(quick: bool) -> dict[str, Any]:
    """No-op runs of 10^3, 10^4 and 10^5 leaves, each in a fresh process: time per leaf and
    driver peak RSS should not grow with the sweep. The 10^3 run is the baseline."""
    sizes, reps = [1_000, 10_000, 100_000], 1 if quick else 3
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    for _ in range(reps):
        for n in sizes:
            args = ["--side", "framework", "--experiment", "noop", "--n", str(n)]
            report = run_child(GATHER_CHILD, [*args, "--factor", "10", "--max-depth", "1"])
            if report.get("seconds") is None:
                raise RuntimeError(f"scaling run of {n} failed: {report}")
            runs[n].append(report)
    best = {n: min(runs[n], key=lambda r: r["seconds"]) for n in sizes}
    per_leaf_us = {n: best[n]["seconds"] / n * 1e6 for n in sizes}
    # The caller's own specs are in the driver's RSS whatever the framework does; net them out.
    own_mib = {n: min(r["peak_rss_mib"] - r["specs_rss_mib"] for r in runs[n]) for n in sizes}
    small, large = sizes[0], sizes[-1]
    rows = [
        row(
            f"us/leaf, 10^5 vs 10^3 [10^4: {per_leaf_us[10_000]:.0f}]",
            round(per_leaf_us[large], 1),
            round(per_leaf_us[small], 1),
            per_leaf_us[large] / per_leaf_us[small],
            "<=1.2",
        ),
        row(
            f"peak RSS above specs MiB [10^4: {own_mib[10_000]:.0f}]",
            round(own_mib[large], 1),
            round(own_mib[small], 1),
            own_mib[large] / own_mib[small],
            "<=1.5",
        ),
    ]
    return {
        "sizes": sizes,
        "repeats": reps,
        "per_leaf_us": per_leaf_us,
        "peak_rss_mib": {n: min(r["peak_rss_mib"] for r in runs[n]) for n in sizes},
        "specs_rss_mib": {n: best[n]["specs_rss_mib"] for n in sizes},
        "rows": rows,
    }


# --------------------------------------------------------------------------- 4. report_scale

REPORT_CHILD = "benchmarks.report_child"
REPORT_RSS_MIB = 1024
REPORT_SECONDS = 60


def report_scale(quick: bool) -> dict[str, Any]:
    """``run.report()`` of a 10^6-row run (10 inputs, 10 outputs, 2% failures, a Sobol design),
    in a fresh process, against the issue's budget: 1 GiB and 60 s. The run folder is built
    synthetically by another process (``benchmarks.report_child --build``)."""
    n = 100_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="scythe-bench-report-") as root:
        built = run_child(REPORT_CHILD, ["--build", "--root", root, "--n", str(n)])
        if built.get("error"):
            raise RuntimeError(f"building the synthetic run failed: {built['error']}")
        measured = run_child(REPORT_CHILD, ["--root", root])
    if measured.get("seconds") is None:
        raise RuntimeError(f"the report failed: {measured}")
    rss, seconds = measured["peak_rss_mib"], measured["seconds"]
    label = f"10^{len(str(n)) - 1} rows"
    rows = [
        row(
            f"report peak RSS MiB ({label})",
            round(rss),
            REPORT_RSS_MIB,
            rss / REPORT_RSS_MIB,
            "<=1.0",
        ),
        row(
            f"report seconds ({label})",
            round(seconds, 1),
            REPORT_SECONDS,
            seconds / REPORT_SECONDS,
            "<=1.0",
        ),
    ]
    return {"n": n, "report": measured, "rows": rows}


# --------------------------------------------------------------------------- 5. hatchet_throughput


def _in_namespace(env: dict[str, str], fn: Callable[[str], float]) -> float:
    """Run ``fn`` with the engine's settings and a fresh namespace in os.environ."""
    namespace = new_namespace()
    with environment({**env, "HATCHET_CLIENT_NAMESPACE": namespace}):
        return fn(namespace)


def hatchet_throughput(quick: bool) -> dict[str, Any]:
    """No-op leaves through HatchetEngine and scythe-oo workers against a bare hatchet-sdk
    task bulk-run on the same engine, with the same number of worker slots."""
    env = hatchet_env()
    if env is None:
        return {"skipped": "no engine", "rows": []}
    n, slots = (1_000 if quick else 5_000), 8
    logs = Path(tempfile.mkdtemp(prefix="scythe-bench-hatchet-"))

    def framework(namespace: str) -> float:
        from scythe_oo import HatchetEngine

        command, settings = scythe_worker(slots)
        with workers([command], {**env, **settings}, logs / namespace):
            specs = [NoopInput(x=float(i)) for i in range(n)]
            with tempfile.TemporaryDirectory(prefix="scythe-bench-") as root:
                started = time.perf_counter()
                run = BenchNoop.allocate(
                    specs,
                    store=LocalStore(root=root),
                    engine=HatchetEngine(),
                    recursion=RecursionPolicy(factor=10, max_depth=1),
                )
                run.wait(timeout=CHILD_TIMEOUT, progress=False)
                seconds = time.perf_counter() - started
                assert run.status == "completed", run.status
        return seconds

    def baseline(namespace: str) -> float:
        from hatchet_sdk import Hatchet

        from benchmarks.hatchet_plain import bulk_run

        command = [sys.executable, "-m", "benchmarks.hatchet_plain", "worker", str(slots)]
        with workers([command], env, logs / namespace):
            started = time.perf_counter()
            done = bulk_run(Hatchet(), n)
            seconds = time.perf_counter() - started
            assert done == n, done
        return seconds

    base = _in_namespace(env, baseline)
    fw = _in_namespace(env, framework)
    rates = (n / fw, n / base)
    return {
        "n": n,
        "slots": slots,
        "framework_s": fw,
        "baseline_s": base,
        "logs": str(logs),
        "rows": [
            row("leaves/s", round(rates[0], 1), round(rates[1], 1), rates[0] / rates[1], ">=0.7")
        ],
    }


# --------------------------------------------------------------------------- driver


BENCHMARKS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "local_overhead": local_overhead,
    "gather_scale": gather_scale,
    "scaling": scaling,
    "report_scale": report_scale,
    "hatchet_throughput": hatchet_throughput,
}


def print_table(results: dict[str, dict[str, Any]]) -> None:
    header = ("benchmark", "metric", "scythe_oo", "baseline", "ratio", "target", "met")
    lines: list[tuple[str, ...]] = []
    for name, result in results.items():
        if "skipped" in result:
            lines.append((name, f"skipped: {result['skipped']}", "", "", "", "", ""))
        for r in result["rows"]:
            ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}"
            met = {True: "yes", False: "NO", None: "-"}[r["met"]]
            cells = (r["metric"], str(r["framework"]), str(r["baseline"]), ratio, r["target"], met)
            lines.append((name, *cells))
    print(format_table(header, lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, no repeats")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME")
    args = parser.parse_args(argv)

    stored = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    stored["machine"] = machine()
    results = {}
    for name in args.only or BENCHMARKS:
        print(f"running {name}{' (quick)' if args.quick else ''} ...", flush=True)
        started = time.perf_counter()
        result = BENCHMARKS[name](args.quick)
        result["date"] = dt.datetime.now().astimezone().isoformat(timespec="seconds")
        result["quick"] = args.quick
        result["elapsed_s"] = round(time.perf_counter() - started, 1)
        results[name] = result
        stored.setdefault("benchmarks", {})[name] = result
        RESULTS.write_text(json.dumps(stored, indent=2, default=str) + "\n")
    print()
    print_table(results)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
