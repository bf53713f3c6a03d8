"""Defaults that mean "one per CPU" count the CPUs this process may use, not the machine's."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scythe_oo.definition import cpus
from scythe_oo.definition.cpus import quota_cpus, usable_cpus


@given(quota=st.integers(1, 10**9), period=st.integers(1, 10**7))
def test_a_quota_allows_its_share_of_cpus_rounded_up(quota: int, period: int) -> None:
    assert quota_cpus(f"{quota} {period}\n") == max(1, math.ceil(quota / period))


@pytest.mark.parametrize("text", ["max 100000", "", "max", "abc 100", "-1 100000", "0 100000"])
def test_no_quota_or_an_unreadable_one_sets_no_limit(text: str) -> None:
    assert quota_cpus(text) is None


def _quota_tree(root: Path, v2_line: str | None, v1: tuple[str, str] | None) -> None:
    """Write this process's cgroup files under ``root`` as /proc/self/cgroup names them."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, group = line.split(":", 2)
        folder_v2 = root / group.lstrip("/")
        if controllers == "" and v2_line is not None:
            folder_v2.mkdir(parents=True, exist_ok=True)
            (folder_v2 / "cpu.max").write_text(v2_line)
        elif "cpu" in controllers.split(",") and v1 is not None:
            folder = root / controllers / group.lstrip("/")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "cpu.cfs_quota_us").write_text(v1[0])
            (folder / "cpu.cfs_period_us").write_text(v1[1])


@pytest.mark.skipif(not Path("/proc/self/cgroup").exists(), reason="Linux cgroups only")
@pytest.mark.parametrize(
    ("v2_line", "v1", "limit"),
    [
        ("100000 100000\n", None, 1),
        ("max 100000\n", None, None),
        (None, ("150000\n", "100000\n"), 2),
        (None, ("-1\n", "100000\n"), None),
    ],
)
def test_a_containers_quota_caps_the_count(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    v2_line: str | None,
    v1: tuple[str, str] | None,
    limit: int | None,
) -> None:
    lines = Path("/proc/self/cgroup").read_text()
    if v1 is not None and not any("cpu" in ln.split(":")[1].split(",") for ln in lines.split()):
        pytest.skip("this kernel has no cgroup v1 cpu controller to name the files")
    _quota_tree(tmp_path, v2_line, v1)
    monkeypatch.setattr(cpus, "CGROUP_ROOT", tmp_path)
    affinity = len(os.sched_getaffinity(0))
    assert usable_cpus() == (min(affinity, limit) if limit is not None else affinity)


@pytest.mark.parametrize("version", ["v2", "v1"])
def test_a_container_without_a_cgroup_namespace_reads_its_quota_at_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    """/proc/self/cgroup names the host's path for the group, but the container has that
    group mounted as the root of its cgroup tree."""
    proc = tmp_path / "proc-cgroup"
    root = tmp_path / "cgroup"
    if version == "v2":
        proc.write_text("0::/docker/0123abcd\n")
        root.mkdir()
        (root / "cpu.max").write_text("100000 100000\n")
    else:
        proc.write_text("4:memory:/docker/0123abcd\n3:cpu,cpuacct:/docker/0123abcd\n")
        (root / "cpu,cpuacct").mkdir(parents=True)
        (root / "cpu,cpuacct" / "cpu.cfs_quota_us").write_text("50000\n")
        (root / "cpu,cpuacct" / "cpu.cfs_period_us").write_text("100000\n")
    monkeypatch.setattr(cpus, "PROC_CGROUP", proc)
    monkeypatch.setattr(cpus, "CGROUP_ROOT", root)
    assert usable_cpus() == 1


@pytest.mark.skipif(shutil.which("taskset") is None, reason="needs util-linux's taskset")
def test_a_process_pinned_to_one_cpu_gets_one_leaf_process_and_one_slot() -> None:
    program = (
        "from scythe_oo.definition.cpus import usable_cpus;"
        "from scythe_oo.engines.local import LocalEngine;"
        "from scythe_oo.engines.hatchet.worker import default_slots;"
        "print(usable_cpus(), LocalEngine().describe()['max_workers'], default_slots())"
    )
    cpu = min(os.sched_getaffinity(0))
    done = subprocess.run(
        ["taskset", "-c", str(cpu), sys.executable, "-c", program],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.split() == ["1", "1", "1"]
