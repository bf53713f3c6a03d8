"""A sweep too large to hold: 10^7 specs from a generator, end to end (issue 15, goal 3).

    .venv/bin/python -m benchmarks.huge                          # 10^7 specs, LocalEngine(2)
    .venv/bin/python -m benchmarks.huge --n 100000 1000000       # smaller baselines
    .venv/bin/python -m benchmarks.huge --engine hatchet --n 1000000   # HatchetEngine's scatter
    .venv/bin/python -m benchmarks.huge --engine hatchet --s3 --n 1000000   # ... on S3 (moto)
    .venv/bin/python -m benchmarks.huge --quick                  # 10^4 specs, seconds

``BenchTen.allocate(generator)`` (the common no-op leaf: 10 float inputs, 10 float outputs),
then ``wait()``; each size in a fresh process (``benchmarks.contenders``). Reports the wall
time, how long ``allocate`` took to return, and the driver's peak RSS, both as the kernel
counted it (``ru_maxrss``) and as sampled from outside. The goal is a driver peak under 1 GiB:
it holds only once ``allocate`` streams the generator into specs.pq chunk by chunk; while it
materialises the iterable, the driver holds every spec and the 10^7 run is stopped at the
harness's memory cap (``--rss-cap-gib``) instead of taking the machine's memory.

With ``--engine hatchet`` the run goes through a running ``scripts/hatchet-local`` and
``--workers`` scythe-oo worker processes (started and stopped here, in a fresh namespace).
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness
from benchmarks.harness import Report, fmt_s
from benchmarks.matrix import describe

GOAL_MIB = 1024
RESULTS = Path(__file__).resolve().parent / "results" / "huge.json"


def measure(
    n: int,
    engine: str,
    n_workers: int,
    cap_s: float,
    rss_cap: int,
    env: Any,
    bucket: str | None = None,
) -> Report:
    contender = "scythe_oo" if engine == "local" else "scythe_oo_hatchet"
    args = ["--contender", contender, "--n", str(n), "--workers", str(n_workers)]
    args += ["--bucket", bucket] if bucket else []
    return harness.run_child("benchmarks.contenders", args, timeout=cap_s, rss_cap=rss_cap, env=env)


def line(n: int, report: Report) -> list[str]:
    if report.get("seconds") is None:
        reached = report.get("sampled_peak_rss_mib")
        shown = "-" if reached is None else f">= {reached:,.0f} MiB"
        return [f"{n:,}", describe(report), "-", "-", shown, "-"]
    peak = report["peak_rss_mib"]
    return [
        f"{n:,}",
        fmt_s(report["seconds"]),
        fmt_s(report.get("allocate_s")),
        f"{report['seconds'] / n * 1e6:.1f}",
        f"{peak:,.0f} MiB",
        "met" if peak < GOAL_MIB else "NOT met",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", help="sizes (default 10^7)")
    parser.add_argument("--quick", action="store_true", help="10^4 specs")
    parser.add_argument("--engine", choices=["local", "hatchet"], default="local")
    parser.add_argument("--workers", type=int, default=2, help="pool or Hatchet worker processes")
    parser.add_argument("--slots", type=int, default=8, help="slots per Hatchet worker")
    parser.add_argument("--s3", action="store_true", help="hatchet: an S3Store on a moto server")
    common_default = harness.RSS_CAP / 2**30
    parser.add_argument("--rss-cap-gib", type=float, default=common_default, help="stop above")
    harness.common_arguments(parser, cap_s=3 * 3600, results=RESULTS, repeats="1")
    args = parser.parse_args(argv)

    sizes = args.n or ([10_000] if args.quick else [10_000_000])
    rss_cap = int(args.rss_cap_gib * 2**30)
    started = time.perf_counter()
    reports: dict[int, list[Report]] = {n: [] for n in sizes}

    def sweep(env: dict[str, str] | None, s3: Any = None) -> None:
        for _ in range(args.repeats or 1):
            for n in sizes:
                print(f"{n:,} specs on {args.engine} ...", flush=True)
                bucket = None if s3 is None else s3.bucket()
                report = measure(n, args.engine, args.workers, args.cap_s, rss_cap, env, bucket)
                reports[n].append(report)
                print(f"    {describe(report)}", flush=True)

    if args.engine == "local":
        sweep(None)
    else:
        client = harness.hatchet_env()
        if client is None:
            raise SystemExit("no Hatchet engine: start one with scripts/hatchet-local up")
        env = {**client, "HATCHET_CLIENT_NAMESPACE": harness.new_namespace()}
        command, settings = harness.scythe_worker(args.slots)
        logs = Path(tempfile.mkdtemp(prefix="scythe-bench-huge-"))
        with contextlib.ExitStack() as stack:
            s3 = None
            if args.s3:
                from benchmarks.hatchet_compare import S3  # its moto server and buckets

                s3 = S3(logs)
                s3.server.start()
                stack.callback(s3.server.stop)
                stack.enter_context(harness.environment(s3.env))  # for creating buckets here
                env.update(s3.env)
            stack.enter_context(
                harness.workers([command] * args.workers, {**env, **settings}, logs)
            )
            sweep(env, s3)

    header = ["specs", "wall", "allocate", "us/spec", "driver peak RSS", f"< {GOAL_MIB} MiB"]
    lines = []
    for n in sizes:
        done = [r for r in reports[n] if r.get("seconds") is not None]
        lines.append(line(n, min(done, key=lambda r: r["seconds"]) if done else reports[n][-1]))
    harness.publish(
        args.json,
        "huge",
        f"allocate(generator) -> wait(), {args.engine} engine{', S3 (moto)' if args.s3 else ''}, "
        f"{args.workers} workers",
        (header, lines),
        [],
        {
            "engine": args.engine,
            "s3": args.s3,
            "workers": args.workers,
            "rss_cap_mib": rss_cap / 2**20,
            "elapsed_s": round(time.perf_counter() - started, 1),
            "reports": {str(n): reports[n] for n in sizes},
        },
        argv,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
