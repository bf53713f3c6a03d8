"""scythe_oo on Hatchet against plain hatchet-sdk and the seed tool (issue 15, goal 4).

    .venv/bin/python -m benchmarks.hatchet_compare            # the issue's table (~45 min)
    .venv/bin/python -m benchmarks.hatchet_compare --quick    # 20 leaves each way, 1 repeat
    .venv/bin/python -m benchmarks.hatchet_compare --contenders plain scythe_local --cases 200
    .venv/bin/python -m benchmarks.hatchet_compare --efficiency 1 2 4 8 --contenders scythe_local

Needs a running local engine (``scripts/hatchet-local up``). Contenders, each on the same
leaves (``benchmarks.leaves``) and in a namespace of its own (``HATCHET_CLIENT_NAMESPACE``):

- ``plain``: bare hatchet-sdk, one task per leaf (``benchmarks.hatchet_plain``), results
  gathered by the driver into the common Parquet table;
- ``scythe_local``: scythe_oo's HatchetEngine with a LocalStore;
- ``scythe_s3``: the same with an S3Store on a moto server (a subprocess on 127.0.0.1);
- ``seed``: the seed tool, scythe-engine 1.3.0 from PyPI in a venv of its own
  (``--seed-venv``, created on first use with uv), on the same moto server
  (``benchmarks.seed_driver``).

Every contender gets ``--worker-processes`` worker processes (default 2) of ``--slots`` slots
each, started before the clock and stopped after its cases; the clock runs from allocate (or
the first trigger) to the final table. Each measurement's driver is a fresh process. The table
gives the min and, in brackets, the median of the repeats; the seed, which takes many minutes
per run above a few hundred leaves, runs those cases once (``--seed-once-above``).

``--efficiency P ...`` adds runs of ``--efficiency-leaves`` 20 ms leaves on P worker processes,
with efficiency = n x 20 ms / cores serving leaves / wall. A scythe_oo worker runs its leaves in
``--slots`` processes of its own, so it serves leaves on min(CPUs, P x slots) cores; plain
hatchet-sdk and the seed run a worker's slots as threads under one lock: min(CPUs, P) cores.

``--leaf-cpus 1`` gives the engine (hatchet-lite, PostgreSQL) and the driver the other CPUs
and starts every worker under ``taskset`` on CPU 1 (``benchmarks.affinity``), as in a
deployment where the engine has a machine of its own; efficiency then counts those CPUs only.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from benchmarks import affinity, harness
from benchmarks.harness import Report, run_child
from benchmarks.matrix import (
    Case,
    Results,
    as_json,
    best,
    case_arguments,
    cell,
    parse_case,
    run_matrix,
)

SIDES = ["plain", "scythe_local", "scythe_s3", "seed"]
LABELS = {
    "plain": "plain hatchet-sdk, one task per leaf",
    "scythe_local": "scythe_oo, LocalStore",
    "scythe_s3": "scythe_oo, S3 (moto)",
    "seed": "seed tool (scythe-engine 1.3.0, S3)",
}
ON_S3 = {"scythe_s3", "seed"}
FULL_CASES = ["200", "2000", "1000x20ms"]
QUICK_CASES = ["20", "20x20ms"]
SEED_VERSION = "1.3.0"
SEED_PACKAGES = [f"scythe-engine=={SEED_VERSION}", "requests"]
"""scythe-engine 1.3.0 imports requests (scythe/utils/filesys.py) without declaring it."""
SEED_VENV = Path.home() / ".cache" / "scythe-oo" / "bench" / "seed-venv"
RESULTS = Path(__file__).resolve().parent / "results" / "hatchet_compare.json"


# --------------------------------------------------------------------------- the seed's venv


def seed_python(venv: Path) -> tuple[str | None, str | None]:
    """The seed venv's python, creating the venv first if needed; or None and why not."""
    python = venv / "bin" / "python"
    probe = [
        str(python),
        "-c",
        "import requests, importlib.metadata as m; print(m.version('scythe-engine'))",
    ]
    if python.exists():
        found = subprocess.run(probe, capture_output=True, text=True, check=False)
        if found.stdout.strip() == SEED_VERSION:
            return str(python), None
    uv = shutil.which("uv")
    if uv is None:
        return None, "uv is not on PATH (bash scripts/bootstrap installs it)"
    print(f"installing {' '.join(SEED_PACKAGES)} into {venv} ...")
    steps = [
        [uv, "venv", "--quiet", "--allow-existing", "--python", "3.11", str(venv)],
        [uv, "pip", "install", "--quiet", "--python", str(python), *SEED_PACKAGES],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            return None, f"{' '.join(step[:3])} failed: {done.stderr.strip()[-500:]}"
    return str(python), None


# --------------------------------------------------------------------------- S3 on moto


class S3:
    """A moto server for the S3 contenders, and a fresh bucket for every run."""

    def __init__(self, logs: Path) -> None:
        from tests.support.s3 import MotoServer  # the test suite's moto subprocess

        self.server = MotoServer(logs / "moto.log")
        missing = str(logs / "no-aws-config")
        self.env = {
            "AWS_ENDPOINT_URL": self.server.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_CONFIG_FILE": missing,
            "AWS_SHARED_CREDENTIALS_FILE": missing,
        }

    def bucket(self) -> str:
        import boto3

        name = f"bench-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=self.server.endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=name)
        return name


# --------------------------------------------------------------------------- one side


def worker_command(side: str, slots: int, seed: str | None) -> tuple[list[str], dict[str, str]]:
    """How one worker process of ``side`` is started, and its settings."""
    if side == "plain":
        return [sys.executable, "-m", "benchmarks.hatchet_plain", "worker", str(slots)], {}
    if side == "seed":
        assert seed is not None
        return [seed, "-m", "benchmarks.seed_driver", "worker"], {"SCYTHE_WORKER_SLOTS": str(slots)}
    return harness.scythe_worker(slots)


def measure_side(case: Case, side: str, s3: S3 | None, seed: str | None, cap_s: float) -> Report:
    """One timed run of ``side`` in a fresh driver process (os.environ holds the namespace)."""
    bucket = s3.bucket() if side in ON_S3 and s3 is not None else None
    size = ["--n", str(case.n), "--spin-ms", str(case.spin_ms)]
    if side == "seed":
        assert seed is not None and bucket is not None
        return run_child(
            "benchmarks.seed_driver",
            ["run", *size, "--bucket", bucket],
            python=seed,
            timeout=cap_s,
        )
    contender = "hatchet_plain" if side == "plain" else "scythe_oo_hatchet"
    args = ["--contender", contender, *size, *(["--bucket", bucket] if bucket else [])]
    return run_child("benchmarks.contenders", args, timeout=cap_s)


# --------------------------------------------------------------------------- goals


def ratio_lines(results: Results, cases: list[Case], sides: list[str]) -> list[str]:
    """scythe_oo against plain on every row (<= 1.0; <= 1.5 allowed on the 200-leaf row)."""
    lines = []
    for case in cases:
        plain = best(results, case, "plain") if "plain" in sides else None
        if plain is None:
            continue
        for side in ("scythe_local", "scythe_s3"):
            fw = best(results, case, side) if side in sides else None
            if fw is None:
                continue
            target = 1.5 if case.n <= 200 and case.spin_ms == 0 else 1.0
            met = "met" if fw / plain <= target else "NOT met"
            lines.append(
                f"goal: {side} / plain on {case.label}: {fw / plain:.2f} (<= {target:g}: {met})"
            )
    return lines


def efficiency_lines(
    results: Results, cases: list[Case], sides: list[str], slots: int, cpus: int
) -> list[str]:
    """Efficiency of 20 ms leaves on P worker processes (goal: >= 0.85 at 1, 2, 4, 8), on
    ``cpus`` CPUs that serve leaves."""
    lines = []
    for case in cases:
        for side in sides:
            wall = best(results, case, side)
            if wall is None:
                continue
            processes = case.workers * (slots if side.startswith("scythe") else 1)
            eff = case.n * case.spin_ms / 1000 / min(processes, cpus) / wall
            met = "met" if eff >= 0.85 else "NOT met"
            lines.append(
                f"efficiency {side}, {case.workers} worker processes, {case.label}: "
                f"{eff:.2f} (>= 0.85: {met})"
            )
    return lines


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    case_arguments(parser, FULL_CASES, QUICK_CASES, SIDES)
    harness.common_arguments(parser, cap_s=1800, results=RESULTS)
    parser.add_argument("--worker-processes", type=int, default=2)
    parser.add_argument("--slots", type=int, default=8, help="slots per worker process")
    parser.add_argument("--seed-once-above", type=int, default=500, help="leaves")
    parser.add_argument("--seed-venv", type=Path, default=SEED_VENV)
    parser.add_argument("--efficiency", type=int, nargs="*", metavar="P", help="default 1 2 4 8")
    parser.add_argument("--efficiency-leaves", type=int, default=1000, help="per case")
    parser.add_argument("--leaf-cpus", help="e.g. 1: workers there, engine and driver elsewhere")
    args = parser.parse_args(argv)
    leaf_cpus = affinity.parse_cpus(args.leaf_cpus) if args.leaf_cpus else None

    client = harness.hatchet_env()
    if client is None:
        raise SystemExit("no Hatchet engine: start one with scripts/hatchet-local up")
    procs = args.worker_processes
    texts = args.cases or (QUICK_CASES if args.quick else FULL_CASES)
    cases = [parse_case(text, procs) for text in texts]
    if args.efficiency is not None:
        wanted = [
            Case(n=args.efficiency_leaves, spin_ms=20, workers=p)
            for p in args.efficiency or [1, 2, 4, 8]
        ]
        cases += [c for c in wanted if c not in cases]  # a main row may already be one
    repeats = args.repeats or (1 if args.quick else 3)
    sides = list(args.contenders)
    absent: dict[str, str] = {}
    seed = None
    if "seed" in sides:
        seed, why = seed_python(args.seed_venv)
        if why is not None:
            absent["seed"] = why
            print(f"skipping seed: {why}")
    logs = Path(tempfile.mkdtemp(prefix="scythe-bench-hatchet-compare-"))
    started = time.perf_counter()

    with contextlib.ExitStack() as stack:
        prefix = stack.enter_context(affinity.split(leaf_cpus)) if leaf_cpus else []
        s3 = None
        if ON_S3 & set(sides):
            s3 = S3(logs)
            s3.server.start()
            stack.callback(s3.server.stop)

        @contextlib.contextmanager
        def session(side: str, n_workers: int) -> Iterator[None]:
            """A fresh namespace and ``n_workers`` healthy worker processes for ``side``."""
            env = {**client, "HATCHET_CLIENT_NAMESPACE": harness.new_namespace()}
            if side in ON_S3 and s3 is not None:
                env.update(s3.env)
            command, settings = worker_command(side, args.slots, seed)
            command = [*prefix, *command]
            folder = logs / f"{side}-{env['HATCHET_CLIENT_NAMESPACE']}"
            serving = harness.workers([command] * n_workers, {**env, **settings}, folder)
            with harness.environment(env), serving:
                yield

        def allowed(case: Case, side: str, repeat: int) -> str | None:
            if side in absent:
                return absent[side]
            if side == "seed" and repeat > 0 and case.n > args.seed_once_above:
                return f"run once above {args.seed_once_above} leaves"
            return None

        def measure(case: Case, side: str) -> Report:
            return measure_side(case, side, s3, seed, args.cap_s)

        results = run_matrix(cases, sides, repeats, measure, allowed=allowed, session=session)

    main_cases = cases[: len(texts)]
    header = [f"{procs} worker processes x {args.slots} slots", *[c.label for c in main_cases]]
    lines = [
        [LABELS[side], *[cell(results[case.key][side]) for case in main_cases]] for side in sides
    ]
    checked = ratio_lines(results, main_cases, sides)
    efficiency = [c for c in cases if c.spin_ms == 20 and c.n == args.efficiency_leaves]
    leaf_cores = len(leaf_cpus) if leaf_cpus else os.cpu_count() or 1
    checked += efficiency_lines(
        results, efficiency if args.efficiency is not None else [], sides, args.slots, leaf_cores
    )
    harness.publish(
        args.json,
        "hatchet_compare",
        f"min (median) of {repeats}; end to end from allocate to final tables",
        (header, lines),
        checked,
        {
            "quick": args.quick,
            "repeats": repeats,
            "worker_processes": procs,
            "slots": args.slots,
            "leaf_cpus": sorted(leaf_cpus) if leaf_cpus else None,
            "seed": {"version": SEED_VERSION, "venv": str(args.seed_venv)},
            "not_available": absent,
            "logs": str(logs),
            "elapsed_s": round(time.perf_counter() - started, 1),
            "results": as_json(results, cases, sides),
        },
        argv,
    )
    print(f"worker logs in {logs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
