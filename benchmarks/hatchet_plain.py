"""The Hatchet baseline: a bare hatchet-sdk task doing the same no-op, with nothing around it.

    python -m benchmarks.hatchet_plain worker SLOTS     # serve the task (blocks)

The driver side (``bulk_run``) declares the same task on its own client and bulk-runs it in
chunks of 1,000, all chunks in flight at once, which is how a hand-written Hatchet sweep would
submit work. Whatever the scythe_oo side loses against this is the framework's overhead
(tree nodes, store writes, journals, gathering), not the engine's.
"""

from __future__ import annotations

import asyncio
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
    """Run ``n`` no-op tasks; returns how many came back."""
    task = declare(hatchet)
    items = [task.create_bulk_run_item(PlainInput(x=float(i))) for i in range(n)]

    async def run_all() -> int:
        chunks = [items[i : i + CHUNK] for i in range(0, n, CHUNK)]
        results = await asyncio.gather(*(task.aio_run_many(chunk) for chunk in chunks))
        return sum(len(r) for r in results)

    return asyncio.run(run_all())


def serve(slots: int) -> None:
    hatchet = Hatchet()
    worker = hatchet.worker("bench-plain", slots=slots, workflows=[declare(hatchet)])
    worker.start()


if __name__ == "__main__":
    if sys.argv[1:2] != ["worker"]:
        raise SystemExit("usage: python -m benchmarks.hatchet_plain worker SLOTS")
    serve(int(sys.argv[2]))
