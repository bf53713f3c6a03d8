"""The Hatchet baseline: bare hatchet-sdk tasks doing the same leaves, with nothing around them.

    python -m benchmarks.hatchet_plain worker SLOTS     # serve both tasks (blocks)

Two tasks: ``bench_plain_noop`` (run.py's one-float no-op) and ``bench_plain_ten`` (the common
10-in, 10-out leaf of ``benchmarks.leaves``, used by hatchet_compare.py). The driver side
(``bulk_run``, ``ten_run``) declares the same task on its own client and bulk-runs it in chunks
of 1,000, one task per leaf, which is how a hand-written Hatchet sweep would submit work.
Whatever the scythe_oo side loses against this is the framework's overhead (tree nodes, store
writes, journals, gathering), not the engine's.
"""

from __future__ import annotations

import sys
from typing import Any

from hatchet_sdk import Context, Hatchet
from pydantic import BaseModel

from benchmarks.experiments import NoopInput, noop
from benchmarks.leaves import Row, compute

TASK_NAME = "bench_plain_noop"
TEN_TASK_NAME = "bench_plain_ten"
CHUNK = 1000


class PlainInput(BaseModel):
    x: float


class PlainOutput(BaseModel):
    y: float


class PlainTenInput(BaseModel):
    x: list[float]
    spin_s: float = 0.0


class PlainTenOutput(BaseModel):
    y: list[float]


def declare(hatchet: Hatchet) -> Any:
    """The task, declared on ``hatchet`` (the worker and the driver each have their own)."""

    @hatchet.task(name=TASK_NAME, input_validator=PlainInput)
    def plain_noop(input: PlainInput, ctx: Context) -> PlainOutput:
        # A sync task like scythe_oo's leaf task, running the same leaf function.
        return PlainOutput(y=noop(NoopInput(x=input.x)).y)

    return plain_noop


def declare_ten(hatchet: Hatchet) -> Any:
    """The common 10-in, 10-out leaf as a plain task, one task per leaf."""

    @hatchet.task(name=TEN_TASK_NAME, input_validator=PlainTenInput)
    def plain_ten(input: PlainTenInput, ctx: Context) -> PlainTenOutput:
        return PlainTenOutput(y=list(compute(input.x, input.spin_s)))

    return plain_ten


def _run_all(task: Any, items: list[Any]) -> list[Any]:
    """Trigger every item, then collect every output, in order.

    Every chunk is triggered before any result is awaited, so the worker never idles between
    chunks; results are then collected the way the SDK's own ``run_many`` does, one run after
    another (this kept up with the worker better than 1,000 concurrent ``aio_result`` calls).
    """
    refs = []
    for i in range(0, len(items), CHUNK):
        refs.extend(task.run_many(items[i : i + CHUNK], wait_for_result=False))
    return [ref.result() for ref in refs]


def bulk_run(hatchet: Hatchet, n: int) -> int:
    """Run ``n`` no-op tasks; returns how many came back."""
    task = declare(hatchet)
    items = [task.create_bulk_run_item(PlainInput(x=float(i))) for i in range(n)]
    return sum(1 for out in _run_all(task, items) if out)


def ten_run(hatchet: Hatchet, xs: list[Row], spin_s: float) -> list[Row]:
    """Run the common leaf once per input row; returns the output rows in input order."""
    task = declare_ten(hatchet)
    items = [task.create_bulk_run_item(PlainTenInput(x=list(x), spin_s=spin_s)) for x in xs]
    outs = _run_all(task, items)
    return [tuple(out.y if isinstance(out, PlainTenOutput) else out["y"]) for out in outs]


def serve(slots: int) -> None:
    hatchet = Hatchet()
    tasks = [declare(hatchet), declare_ten(hatchet)]
    worker = hatchet.worker("bench-plain", slots=slots, workflows=tasks)
    worker.start()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        raise SystemExit("usage: python -m benchmarks.hatchet_plain worker SLOTS")
    serve(int(sys.argv[2]))
