"""The Hatchet baseline: a bare hatchet-sdk task doing the same no-op, with nothing around it.

    python -m benchmarks.hatchet_plain worker SLOTS     # serve the task (blocks)

The driver side (``bulk_run``) declares the same task on its own client and bulk-runs it in
chunks of 1,000, which is how a hand-written Hatchet sweep would submit work. Whatever the
scythe_oo side loses against this is the framework's overhead (tree nodes, store writes,
journals, gathering), not the engine's.
"""

from __future__ import annotations

import sys
from typing import Any

from hatchet_sdk import Context, Hatchet
from pydantic import BaseModel

from benchmarks.experiments import NoopInput, noop

TASK_NAME = "bench_plain_noop"
CHUNK = 1000


class PlainInput(BaseModel):
    x: float


class PlainOutput(BaseModel):
    y: float


def declare(hatchet: Hatchet) -> Any:
    """The task, declared on ``hatchet`` (the worker and the driver each have their own)."""

    @hatchet.task(name=TASK_NAME, input_validator=PlainInput)
    def plain_noop(input: PlainInput, ctx: Context) -> PlainOutput:
        # A sync task like scythe_oo's leaf task, running the same leaf function.
        return PlainOutput(y=noop(NoopInput(x=input.x)).y)

    return plain_noop


def bulk_run(hatchet: Hatchet, n: int) -> int:
    """Run ``n`` no-op tasks; returns how many came back.

    Every chunk is triggered before any result is awaited, so the worker never idles between
    chunks; results are then collected the way the SDK's own ``run_many`` does, one run after
    another (this kept up with the worker better than 1,000 concurrent ``aio_result`` calls).
    """
    task = declare(hatchet)
    items = [task.create_bulk_run_item(PlainInput(x=float(i))) for i in range(n)]
    refs = []
    for i in range(0, n, CHUNK):
        refs.extend(task.run_many(items[i : i + CHUNK], wait_for_result=False))
    return sum(1 for ref in refs if ref.result())


def serve(slots: int) -> None:
    hatchet = Hatchet()
    worker = hatchet.worker("bench-plain", slots=slots, workflows=[declare(hatchet)])
    worker.start()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        raise SystemExit("usage: python -m benchmarks.hatchet_plain worker SLOTS")
    serve(int(sys.argv[2]))
