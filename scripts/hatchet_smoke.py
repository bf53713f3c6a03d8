#!/usr/bin/env python3
"""End-to-end smoke test of hatchet-sdk against a real engine (scripts/hatchet-local).

    eval "$(scripts/hatchet-local env)"
    HATCHET_CLIENT_NAMESPACE=smoke_me python scripts/hatchet_smoke.py

It starts a worker in a subprocess (Worker.start() blocks, installs signal handlers and
calls sys.exit, so it cannot share the test process), waits for the worker's /health,
then: runs a plain task, a durable task that spawns 3 children with child_key and waits
for them, a failing task, and a fire-and-forget run polled by run id. Exits non-zero on
any mismatch. Without HATCHET_CLIENT_NAMESPACE a random one is used, so concurrent
smoke runs against one engine stay apart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import timedelta
from typing import Any

# Must be set before Hatchet() reads its settings; inherited by the worker subprocess.
os.environ.setdefault("HATCHET_CLIENT_NAMESPACE", f"smoke_{uuid.uuid4().hex[:8]}")

from hatchet_sdk import (
    Context,
    DesiredWorkerLabel,
    DurableContext,
    FailedTaskRunExceptionGroup,
    Hatchet,
    V1TaskStatus,
)
from hatchet_sdk.runnables.workflow import BaseWorkflow
from pydantic import BaseModel

hatchet = Hatchet()


class AddIn(BaseModel):
    a: int
    b: int


class AddOut(BaseModel):
    total: int
    worker_labels: dict[str, str | int]


class SquareIn(BaseModel):
    i: int


class SquareOut(BaseModel):
    i: int
    square: int
    child_key: str | None


class FanIn(BaseModel):
    n: int = 3


class FanOut(BaseModel):
    squares: list[int]
    child_keys: list[str | None]


@hatchet.task(
    name="smoke-add",
    input_validator=AddIn,
    execution_timeout=timedelta(seconds=30),
    schedule_timeout=timedelta(minutes=2),
    retries=1,
    backoff_factor=2.0,
    backoff_max_seconds=10,
    # Only a worker started with labels={"role": "smoke"} may run it.
    desired_worker_labels=[DesiredWorkerLabel(key="role", value="smoke", required=True)],
)
def add(input: AddIn, ctx: Context) -> AddOut:
    # A sync task: the SDK runs it in a thread pool, not on the worker's event loop.
    return AddOut(total=input.a + input.b, worker_labels=ctx.worker_labels)


@hatchet.task(
    name="smoke-square", input_validator=SquareIn, execution_timeout=timedelta(seconds=30)
)
async def square(input: SquareIn, ctx: Context) -> SquareOut:
    return SquareOut(i=input.i, square=input.i * input.i, child_key=ctx.child_key)


@hatchet.durable_task(
    name="smoke-fanout", input_validator=FanIn, execution_timeout=timedelta(minutes=2)
)
async def fanout(input: FanIn, ctx: DurableContext) -> FanOut:
    # child_key makes each spawn idempotent: a replayed/retried parent re-attaches to the
    # same children instead of creating new ones.
    items = [
        square.create_bulk_run_item(SquareIn(i=i), child_key=f"square-{i}") for i in range(input.n)
    ]
    results = await square.aio_run_many(items)
    return FanOut(squares=[r.square for r in results], child_keys=[r.child_key for r in results])


@hatchet.task(name="smoke-boom", execution_timeout=timedelta(seconds=30))
def boom(input: object, ctx: Context) -> dict[str, str]:
    raise RuntimeError("boom from smoke test")


WORKFLOWS: list[BaseWorkflow[Any]] = [add, square, fanout, boom]


def run_worker() -> None:
    worker = hatchet.worker(
        "smoke-worker", slots=4, durable_slots=4, labels={"role": "smoke"}, workflows=WORKFLOWS
    )
    worker.start()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"worker exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit("worker never reported healthy")


def check(label: str, got: object, want: object) -> None:
    ok = got == want
    print(f"[{'ok' if ok else 'FAIL'}] {label}: {got!r}" + ("" if ok else f" (want {want!r})"))
    if not ok:
        raise SystemExit(1)


def main() -> None:
    print(f"namespace={hatchet.namespace!r} host_port={hatchet.config.host_port}")
    port = free_port()
    env = dict(
        os.environ,
        HATCHET_CLIENT_WORKER_HEALTHCHECK_ENABLED="True",
        HATCHET_CLIENT_WORKER_HEALTHCHECK_PORT=str(port),
        # The SDK's default bind address is 0.0.0.0.
        HATCHET_CLIENT_WORKER_HEALTHCHECK_BIND_ADDRESS="127.0.0.1",
    )
    # Own session: the worker spawns a listener child process, and if the worker has to be
    # SIGKILLed that child would otherwise be orphaned; killpg takes both.
    worker = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "worker"], env=env, start_new_session=True
    )
    try:
        t0 = time.monotonic()
        wait_healthy(port, worker)
        print(f"worker healthy after {time.monotonic() - t0:.1f}s")

        t0 = time.monotonic()
        out = add.run(AddIn(a=2, b=3))
        check("add.run -> total", out.total, 5)
        check("add ran on labelled worker", out.worker_labels.get("role"), "smoke")
        print(f"  add.run took {time.monotonic() - t0:.2f}s")

        t0 = time.monotonic()
        fan = fanout.run(FanIn(n=3))
        check("fanout squares", fan.squares, [0, 1, 4])
        check("fanout child keys", fan.child_keys, ["square-0", "square-1", "square-2"])
        print(f"  fanout.run took {time.monotonic() - t0:.2f}s")

        try:
            boom.run()
        except FailedTaskRunExceptionGroup as e:
            errs = e.exceptions
            check("boom error type", (len(errs), errs[0].exc_type), (1, "RuntimeError"))
            check("boom error message", errs[0].exc, "boom from smoke test")
        else:
            raise SystemExit("boom.run() did not raise")

        ref = add.run(AddIn(a=40, b=2), wait_for_result=False)
        run_id = ref.workflow_run_id
        deadline = time.monotonic() + 60
        status = hatchet.runs.get_status(run_id)
        while status in (V1TaskStatus.QUEUED, V1TaskStatus.RUNNING) and time.monotonic() < deadline:
            time.sleep(0.5)
            status = hatchet.runs.get_status(run_id)
        check("no-wait run status", status, V1TaskStatus.COMPLETED)
        check("runs.get_result", hatchet.runs.get_result(run_id)["total"], 42)
        check("add.get_result", add.get_result(run_id).total, 42)
        print("SMOKE OK")
    finally:
        # SIGTERM lets the worker drain; it can hang (e.g. retrying an event send that is
        # over the gRPC size limit), hence the bounded wait and group kill.
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()


if __name__ == "__main__":
    if sys.argv[1:] == ["worker"]:
        run_worker()
    else:
        main()
