"""What every benchmark script shares: measured children, Hatchet workers, machine facts, tables.

The scripts (run.py, peers.py, cores.py, huge.py, hatchet_compare.py) differ in what they
measure, not in how: each measured side runs in a fresh process (so its peak RSS is its own and
a wedged side can be killed with everything it started), Hatchet workers are subprocesses in
their own sessions that are healthy before the clock starts and gone afterwards, and every
result file records the machine, the date and the command that produced it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT = 20 * 60
RSS_CAP = min(12 * 2**30, psutil.virtual_memory().total // 2)
"""A side is stopped above this RSS: the machine is shared, and an OOM kill would hit others."""
MEMORY_FLOOR = 2 * 2**30
"""A side is also stopped when the machine has less than this available, whoever uses it."""

Report = dict[str, Any]


# --------------------------------------------------------------------------- provenance


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Machine, date and command line, recorded beside every figure."""
    args = sys.argv[1:] if argv is None else list(argv)
    module = Path(sys.argv[0]).stem
    return {
        "machine": machine(),
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join([".venv/bin/python", "-m", f"benchmarks.{module}", *args]),
    }


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def common_arguments(
    parser: argparse.ArgumentParser,
    cap_s: float,
    results: Path,
    repeats: str = "3 (1 with --quick)",
) -> None:
    """The flags every script has: repeats, the per-run time cap and where the JSON goes."""
    parser.add_argument("--repeats", type=int, help=f"default {repeats}")
    parser.add_argument("--cap-s", type=float, default=cap_s, help="stop a run after this long")
    parser.add_argument("--json", type=Path, default=results, help="where to write the figures")


def publish(
    path: Path,
    benchmark: str,
    title: str,
    table: tuple[Sequence[str], Sequence[Sequence[str]]],
    goals: Sequence[str],
    details: Mapping[str, Any],
    argv: Sequence[str] | None = None,
) -> None:
    """Print the table and the goals, and write them with the provenance and ``details``."""
    header, lines = table
    print()
    print(title)
    print(format_table(header, lines))
    for goal in goals:
        print(goal)
    write_json(
        path,
        {
            **provenance(argv),
            "benchmark": benchmark,
            "title": title,
            "table": {"header": list(header), "lines": [list(line) for line in lines]},
            "goals": list(goals),
            **details,
        },
    )
    print(f"\nwritten to {path}")


# --------------------------------------------------------------------------- numbers and tables


def summary(values: Sequence[float]) -> dict[str, Any]:
    """Min and median of the repeats that finished, and every raw value."""
    done = [v for v in values if v is not None]
    return {
        "min": min(done) if done else None,
        "median": statistics.median(done) if done else None,
        "values": list(values),
    }


def fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds < 100 else f"{seconds:.0f} s"


def format_table(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell."""
    cells = [list(header), *[list(line) for line in lines]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in cells
    )


# --------------------------------------------------------------------------- child processes


def run_child(
    module: str,
    args: Sequence[str],
    *,
    timeout: float = CHILD_TIMEOUT,
    python: str = sys.executable,
    env: Mapping[str, str] | None = None,
    rss_cap: int = RSS_CAP,
) -> Report:
    """``python -m module *args --scratch DIR`` in a fresh process, and the JSON it prints last.

    Its RSS is sampled from here, so a side stopped for time (``timeout``) or memory
    (``rss_cap``, or the machine's available memory under ``MEMORY_FLOOR``) still reports how
    much memory it had reached: a lower bound of its peak. It runs in a session of its own, so
    killing it ends everything it started (pool workers, clusters). The scratch directory is
    removed afterwards, even after a kill.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory(prefix="scythe-bench-") as scratch,
    ):
        proc = subprocess.Popen(
            [python, "-m", module, *args, "--scratch", scratch],
            stdout=out,
            stderr=err,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            start_new_session=True,
        )
        watched = psutil.Process(proc.pid)
        sampled = 0
        started = time.monotonic()
        try:
            while proc.poll() is None:
                with contextlib.suppress(psutil.NoSuchProcess):
                    sampled = max(sampled, watched.memory_info().rss)
                elapsed = time.monotonic() - started
                low = psutil.virtual_memory().available < MEMORY_FLOOR
                if elapsed > timeout or sampled > rss_cap or low:
                    reason = (
                        f">{timeout:.0f}s"
                        if elapsed > timeout
                        else f"RSS cap at {elapsed:.0f}s"
                        if sampled > rss_cap
                        else f"machine memory low at {elapsed:.0f}s"
                    )
                    return {
                        "stopped": reason,
                        "stopped_after_s": elapsed,
                        "seconds": None,
                        "sampled_peak_rss_mib": sampled / 2**20,
                    }
                time.sleep(0.25)
        finally:
            _kill_session(proc)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            tail = err.read().decode(errors="replace")[-3000:]
            return {"error": f"exit {proc.returncode}: {tail}", "seconds": None}
        lines = out.read().decode().strip().splitlines()
        report: Report = json.loads(lines[-1])
        report["sampled_peak_rss_mib"] = sampled / 2**20
        return report


def _kill_session(proc: subprocess.Popen[bytes]) -> None:
    """End ``proc`` and whatever it left in its session (a cluster's daemons, say)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


# --------------------------------------------------------------------------- environment


@contextlib.contextmanager
def environment(overrides: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with ``overrides`` for the duration (SDKs read their settings there)."""
    saved = dict(os.environ)
    os.environ.update(overrides)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def new_namespace() -> str:
    """A fresh HATCHET_CLIENT_NAMESPACE, so that runs never meet."""
    return f"bench{uuid.uuid4().hex[:8]}_"


# --------------------------------------------------------------------------- Hatchet


def hatchet_env() -> dict[str, str] | None:
    """Client settings of a running `scripts/hatchet-local`, or None when there is none."""
    script = ROOT / "scripts" / "hatchet-local"
    status = subprocess.run(["bash", str(script), "status"], capture_output=True, check=False)
    if status.returncode != 0:
        return None
    listed = subprocess.run(
        ["bash", str(script), "env"], capture_output=True, text=True, check=True, timeout=60
    )
    env = {}
    for line in listed.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            env[name] = value.strip().strip("'\"")
    return env


@contextlib.contextmanager
def workers(commands: Sequence[list[str]], env: Mapping[str, str], logs: Path) -> Iterator[None]:
    """Start every worker (``env`` added to this process's environment), wait until each
    answers its health check, and stop them all afterwards, even after a failed start.

    The worker processes are the test suite's (``tests.support.hatchet.WorkerProcess``): each
    in its own session, stopped with SIGTERM and then SIGKILL to the whole group.
    """
    from tests.support.hatchet import WorkerProcess  # imports pytest: only where workers run

    logs.mkdir(parents=True, exist_ok=True)
    started: list[WorkerProcess] = []
    try:
        for i, command in enumerate(commands):
            worker = WorkerProcess(f"bench-{i}", command, dict(env), logs / f"worker-{i}.log")
            started.append(worker)
            worker.start(timeout=180)
        yield
    finally:
        for worker in started:
            worker.stop()


def scythe_worker(slots: int) -> tuple[list[str], dict[str, str]]:
    """Command and settings of one ``scythe-oo worker`` serving ``benchmarks.experiments``."""
    command = [sys.executable, "-m", "scythe_oo.cli", "worker", "benchmarks.experiments"]
    return command, {"SCYTHE_WORKER_SLOTS": str(slots)}
