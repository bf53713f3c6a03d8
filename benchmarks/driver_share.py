"""How much CPU a LocalEngine run's driver spends per leaf, against its workers (issue 15, goal 2).

    .venv/bin/python -m benchmarks.driver_share                   # 10^6 no-op leaves, 2 workers
    .venv/bin/python -m benchmarks.driver_share --n 100000 --workers 4 --json FILE

Goal 2 asks that the driver never be the bottleneck up to 16 workers. Where no 16-core machine
is at hand, the driver's CPU per leaf says how far it can go: a driver that needs D us of CPU
per leaf on one core coordinates at most 10^6 / D leaves a second, and each worker runs about
10^6 / W, where W is the workers' CPU per leaf. Past W / D workers, more workers cannot make a
sweep of tiny leaves faster (the driver's threads can overlap some of its work, so this is a
bound for a driver held to one core).

The sweep is given as a DataFrame, as the peers' table contender; the driver's CPU is counted
apart for allocate and for the run (``RUSAGE_SELF``, all its threads), the workers' from
``RUSAGE_CHILDREN`` once the run has ended and its pool is gone.

The sum over the driver's threads overstates the bound where its threads can use several cores,
so the run's CPU is also split by thread (``/proc/self/task``, read every 50 ms while the run
goes on; Linux only): the run's own thread, whose event loop hands out every batch, and the
busiest of the helper threads (Parquet and Arrow work, the pool's manager). The busiest single
thread is the tighter bound on how many workers one driver keeps busy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd

from benchmarks.contenders import inputs_of
from benchmarks.experiments import TEN_BY_MS
from benchmarks.leaves import INPUTS
from scythe_oo import LocalEngine, LocalStore


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class ThreadClocks:
    """Each of this process's threads' CPU seconds, sampled until ``stop``: the largest
    reading of each thread, less what it had used when sampling started."""

    def __init__(self) -> None:
        self.start = self._read()
        self.peak: dict[int, float] = {}
        self.names: dict[int, str] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="thread-clocks", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """CPU seconds of the run's thread, the busiest other thread, and all the others."""
        self._done.set()
        self._thread.join()
        own = self._thread.native_id
        used = {tid: cpu - self.start.get(tid, 0.0) for tid, cpu in self.peak.items() if tid != own}
        run = [tid for tid, name in self.names.items() if name.startswith("scythe-run-")]
        run_cpu = sum(used.get(tid, 0.0) for tid in run)
        others = {tid: cpu for tid, cpu in used.items() if tid not in run}
        busiest = max(others, key=lambda tid: others[tid], default=None)
        return {
            "run_thread_cpu_s": run_cpu,
            "busiest_other_thread_cpu_s": others.get(busiest, 0.0) if busiest else 0.0,
            "busiest_other_thread": self.names.get(busiest, "native") if busiest else "",
            "other_threads_cpu_s": sum(others.values()),
        }

    def _sample(self) -> None:
        while not self._done.wait(0.05):
            self.names.update({t.native_id: t.name for t in threading.enumerate() if t.native_id})
            for tid, cpu in self._read().items():
                self.peak[tid] = max(cpu, self.peak.get(tid, 0.0))

    @staticmethod
    def _read() -> dict[int, float]:
        ticks = os.sysconf("SC_CLK_TCK")
        found: dict[int, float] = {}
        for entry in os.scandir("/proc/self/task"):
            try:
                with open(f"{entry.path}/stat", encoding="ascii") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended
                continue
            found[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
        return found


def measure(n: int, workers: int) -> dict[str, float | str]:
    """One run of ``n`` no-op leaves on ``workers`` processes, in this (fresh) process."""
    frame = pd.DataFrame([inputs_of(i) for i in range(n)], columns=list(INPUTS))
    with tempfile.TemporaryDirectory() as scratch:
        started, cpu = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        run = TEN_BY_MS[0].allocate(
            frame, store=LocalStore(root=Path(scratch)), engine=LocalEngine(max_workers=workers)
        )
        allocated, cpu_allocated = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        clocks = ThreadClocks()
        run.wait(progress=False)
        ended, cpu_ended = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
        threads = clocks.stop()
        if run.status != "completed":
            raise RuntimeError(f"the run ended as {run.status}")
    children = _cpu(resource.RUSAGE_CHILDREN)
    driver_us, workers_us = 1e6 * (cpu_ended - cpu_allocated) / n, 1e6 * children / n
    return {
        "n": n,
        "workers": workers,
        "allocate_s": allocated - started,
        "allocate_cpu_s": cpu_allocated - cpu,
        "run_s": ended - allocated,
        "driver_run_cpu_s": cpu_ended - cpu_allocated,
        "driver_us_per_leaf": driver_us,
        "workers_us_per_leaf": workers_us,
        "workers_one_driver_core_keeps_busy": workers_us / driver_us,
        **threads,
        "run_thread_us_per_leaf": 1e6 * float(threads["run_thread_cpu_s"]) / n,
        "busiest_other_thread_us_per_leaf": 1e6 * float(threads["busiest_other_thread_cpu_s"]) / n,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, help="where to write the figures")
    args = parser.parse_args(argv)
    figures = measure(args.n, args.workers)
    print(
        f"{figures['n']:,} no-op leaves on {figures['workers']} workers: allocate "
        f"{figures['allocate_s']:.2f} s, run {figures['run_s']:.2f} s; driver "
        f"{figures['driver_us_per_leaf']:.2f} us/leaf, workers "
        f"{figures['workers_us_per_leaf']:.2f} us/leaf: one driver core keeps about "
        f"{figures['workers_one_driver_core_keeps_busy']:.1f} workers busy. By thread: the "
        f"run's {figures['run_thread_us_per_leaf']:.2f} us/leaf, the busiest other "
        f"({figures['busiest_other_thread']}) {figures['busiest_other_thread_us_per_leaf']:.2f} "
        f"us/leaf, all others {figures['other_threads_cpu_s']:.2f} s"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
