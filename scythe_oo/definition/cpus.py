"""How many CPUs this process may really use, which is often fewer than the machine has.

``os.cpu_count()`` counts the machine's CPUs. A worker started under ``taskset``, in a
container given a cpuset, or in a container given a CPU quota (``docker run --cpus 2``, an ECS
or AWS Batch task's vCPUs, a Kubernetes CPU limit) may use fewer. Starting one leaf process per
machine CPU there runs several processes per usable CPU: each leaf takes longer, memory grows
with the process count, and the kernel throttles the whole container once its quota is spent.
So every default that means "one per CPU" asks here.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def quota_cpus(cpu_max: str) -> int | None:
    """CPUs a cgroup v2 ``cpu.max`` line allows (``"200000 100000"`` is 2), rounded up;
    None where it sets no quota (``"max 100000"``) or cannot be read."""
    parts = cpu_max.split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    try:
        quota, period = int(parts[0]), int(parts[1])
    except ValueError:
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))


def _quota_files() -> list[tuple[Path, ...]]:
    """Where this process's CPU quota may be written, in order: its cgroup v2 group's
    ``cpu.max``, or cgroup v1's ``cpu`` controller's ``cfs_quota_us`` and ``cfs_period_us``,
    under the group ``/proc/self/cgroup`` names, then at the mount's root. A container
    without a cgroup namespace names its group as the host sees it (``/docker/<id>``) but has
    that group mounted as the root."""
    try:
        lines = PROC_CGROUP.read_text().splitlines()
    except OSError:  # not Linux
        return []
    found: list[tuple[Path, ...]] = []
    for line in lines:
        _, controllers, group = line.split(":", 2)
        folders = dict.fromkeys([group.strip("/"), ""])
        if controllers == "":
            for mount in (CGROUP_ROOT, CGROUP_ROOT / "unified"):
                found += [(mount / folder / "cpu.max",) for folder in folders]
        elif "cpu" in controllers.split(","):
            mount = CGROUP_ROOT / controllers
            found += [
                (mount / folder / "cpu.cfs_quota_us", mount / folder / "cpu.cfs_period_us")
                for folder in folders
            ]
    return found


def _own_cpu_max() -> str | None:
    """This process's CPU quota as a ``cpu.max`` line (v1's ``-1`` quota reads as ``max``);
    None where no quota file can be read."""
    for files in _quota_files():
        try:
            texts = [path.read_text().strip() for path in files]
        except OSError:
            continue
        if len(texts) == 2 and texts[0] == "-1":
            texts[0] = "max"
        return " ".join(texts)
    return None


def usable_cpus() -> int:
    """CPUs this process may use: the fewest of its affinity mask and its cgroup's quota."""
    # macOS and Windows have no affinity mask to read
    affinity = getattr(os, "sched_getaffinity", None)
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    cpu_max = _own_cpu_max()
    quota = quota_cpus(cpu_max) if cpu_max is not None else None
    return max(1, min(cpus, quota) if quota is not None else cpus)
