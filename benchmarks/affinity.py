"""Give the local Hatchet engine cores of its own, as a real deployment does.

On the 2-core machine the engine (hatchet-lite and PostgreSQL) shares the cores that serve
leaves, so a CPU-bound row measures the engine's polling as much as the worker. In a real
deployment the engine runs on a machine of its own. ``split`` reproduces that on one machine:
the engine's processes, every one of their threads, and the benchmark's driver move to
``engine`` CPUs; the worker processes are started under ``taskset`` on the ``leaves`` CPUs
(their forked leaf processes inherit the mask). The efficiency of a CPU row is then measured
against the cores that serve leaves only, which is the issue's own definition.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

import psutil

ENGINE_NAMES = ("hatchet-lite", "postgres")


def parse_cpus(text: str) -> set[int]:
    """``"1"``, ``"1,3"`` or ``"2-7"`` as a set of CPU numbers this process may use."""
    cpus: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    allowed = os.sched_getaffinity(0)
    if not cpus or not cpus <= allowed:
        raise SystemExit(f"--leaf-cpus {text!r}: choose among the CPUs {sorted(allowed)}")
    return cpus


def engine_threads() -> list[int]:
    """Thread ids of every hatchet-lite and PostgreSQL process on the machine."""
    threads = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] not in ENGINE_NAMES:
            continue
        with contextlib.suppress(psutil.Error):
            threads += [t.id for t in proc.threads()]
    return threads


def _pin(tids: Sequence[int], cpus: set[int]) -> None:
    for tid in tids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.sched_setaffinity(tid, cpus)


@contextlib.contextmanager
def split(leaves: set[int]) -> Iterator[list[str]]:
    """Engine and driver on the CPUs outside ``leaves``; yields the workers' command prefix.

    Every mask is restored afterwards. PostgreSQL backends forked later inherit the
    postmaster's mask, and the Go runtime's new threads their creator's.
    """
    everything = os.sched_getaffinity(0)
    engine = everything - leaves
    if not engine:
        raise SystemExit("--leaf-cpus must leave at least one CPU for the engine and driver")
    tids = engine_threads()
    if not tids:
        raise SystemExit("no hatchet-lite or postgres process to pin: is the engine up?")
    _pin(tids, engine)
    os.sched_setaffinity(0, engine)
    try:
        yield ["taskset", "-c", ",".join(map(str, sorted(leaves)))]
    finally:
        os.sched_setaffinity(0, everything)
        _pin(engine_threads(), everything)
