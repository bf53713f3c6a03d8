"""Experiments that count their own executions, for resume/retry tests.

Kept in an importable module so a driver subprocess and the test process see the same class.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import psutil
from pydantic import Field

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    RecursionPolicy,
)
from tests.support.daily import wait_for


class CountedInput(ExperimentInputSpec):
    i: int = Field(ge=0)
    counter_dir: str
    seconds: float = 0.0
    fail_until_generation_flag: str = ""
    fail_below: int = -1
    """With the flag: fail the specs below this position, instead of every third one."""
    gate: str = ""
    """A file to wait for (a test creates it to let the leaf end), after its count is written."""


class CountedOutput(ExperimentOutputSpec):
    square: int


class Counted(Experiment[CountedInput, CountedOutput]):
    """Writes one file per execution; fails while its flag file is absent (when set)."""

    name = "counted"
    recursion = RecursionPolicy(factor=4, max_depth=1)
    min_batch_seconds = 0.0

    def run(self, spec: CountedInput, ctx: LeafContext) -> CountedOutput:
        Path(spec.counter_dir, f"{spec.i}-{os.getpid()}-{uuid.uuid4().hex[:6]}").write_text("x")
        time.sleep(spec.seconds)
        if spec.gate:
            wait_for(Path(spec.gate))
        flag = spec.fail_until_generation_flag
        failing = spec.i < spec.fail_below if spec.fail_below >= 0 else spec.i % 3 == 0
        if flag and not Path(flag).exists() and failing:
            raise RuntimeError(f"leaf {spec.i} fails until the flag exists")
        return CountedOutput(square=spec.i * spec.i)


def executions(counter_dir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in counter_dir.iterdir():
        index = int(path.name.split("-", 1)[0])
        counts[index] = counts.get(index, 0) + 1
    return counts


class Crashy(Experiment[CountedInput, CountedOutput]):
    """Spec 5 crashes its own worker process every time, like a segfaulting simulation."""

    name = "crashy"
    retries = 1
    min_batch_seconds = 0.0
    crash_signal = signal.SIGSEGV

    def run(self, spec: CountedInput, ctx: LeafContext) -> CountedOutput:
        Path(spec.counter_dir, f"{spec.i}-{os.getpid()}-{uuid.uuid4().hex[:6]}").write_text("x")
        time.sleep(spec.seconds)
        if spec.i == 5:
            os.kill(os.getpid(), self.crash_signal)
        return CountedOutput(square=spec.i * spec.i)


class KilledFromOutside(Crashy):
    """Spec 5's worker gets SIGKILL every time, as from someone else's ``kill -9``."""

    name = "killed_from_outside"
    crash_signal = signal.SIGKILL


class SoakInput(ExperimentInputSpec):
    i: int = Field(ge=0)
    fail: bool = False


class SoakOutput(ExperimentOutputSpec):
    square: int


class Soak(Experiment[SoakInput, SoakOutput]):
    """Fails exactly the specs marked to fail; everything else must come back."""

    name = "soak"
    recursion = RecursionPolicy(factor=10, max_depth=2)
    min_batch_seconds = 0.2

    def run(self, spec: SoakInput, ctx: LeafContext) -> SoakOutput:
        if spec.fail:
            raise RuntimeError(f"injected failure of spec {spec.i}")
        return SoakOutput(square=spec.i * spec.i)


def pool_workers() -> list[psutil.Process]:
    """This process's forked pool workers (they share our command line; fixture servers do not)."""
    me = psutil.Process()
    found = []
    for child in me.children():
        try:
            if child.status() != psutil.STATUS_ZOMBIE and child.cmdline() == me.cmdline():
                found.append(child)
        except psutil.Error:  # exited or reaped meanwhile
            continue
    return found
