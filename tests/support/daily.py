"""The experiment of the daily-loop tests, importable by CLI subprocesses and Hatchet workers.

Each leaf logs ``lines`` lines, can wait for a gate file (so a test decides when leaves may end,
without sleeping), and fails on purpose while its ``fixed_flag`` file is absent.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
from pydantic import Field

from scythe_oo import Experiment, ExperimentInputSpec, ExperimentOutputSpec, LeafContext

GATE_SECONDS = 120.0
"""A gated leaf gives up after this long, so a broken test cannot hang a worker forever."""


class DailyInput(ExperimentInputSpec):
    i: int = Field(ge=0, le=10_000, description="Which leaf")
    x: float = Field(default=1.0, ge=0, le=100, description="A number to square")
    fails: bool = False
    fixed_flag: str = ""
    gate: str = ""
    lines: int = Field(default=2, ge=0)


class DailyOutput(ExperimentOutputSpec):
    square: float = Field(description="x squared, times i")


class Daily(Experiment[DailyInput, DailyOutput]):
    """Logs, optionally waits for a gate, optionally fails; returns i * x**2."""

    name = "daily"
    min_batch_seconds = 0.0

    def run(self, spec: DailyInput, ctx: LeafContext) -> DailyOutput:
        for k in range(spec.lines):
            ctx.log(f"leaf {spec.i} says line {k}")
        if spec.gate:
            wait_for(Path(spec.gate))
            ctx.log(f"leaf {spec.i} passed the gate")
        if spec.fails and not (spec.fixed_flag and Path(spec.fixed_flag).exists()):
            raise RuntimeError(f"leaf {spec.i} fails on purpose")
        table = pd.DataFrame({"k": [0, 1], "value": [spec.x, spec.x * 2]}).set_index("k")
        return DailyOutput(square=spec.i * spec.x**2, dataframes={"pairs": table})


def wait_for(path: Path) -> None:
    """Block until ``path`` exists (a test creates it to let leaves go on)."""
    deadline = time.monotonic() + GATE_SECONDS
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the gate {path} never opened")
        time.sleep(0.02)


def specs(n: int, **fields: object) -> list[DailyInput]:
    """``n`` specs; every third one (i % 3 == 0) fails while ``fixed_flag`` is absent, when
    ``fails_every_third`` is given."""
    every_third = bool(fields.pop("fails_every_third", False))
    return [
        DailyInput(i=i, x=1.0 + i / 10, fails=every_third and i % 3 == 0, **fields)  # type: ignore[arg-type]
        for i in range(n)
    ]
