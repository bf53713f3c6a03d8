"""Experiments served by the Hatchet test workers (imported by `scythe-oo worker`)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from pydantic import Field

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    RecursionPolicy,
    WorkerLabel,
)


class ProbeInput(ExperimentInputSpec):
    i: int = Field(ge=0)
    counter_dir: str = ""
    seconds: float = 0.0


class ProbeOutput(ExperimentOutputSpec):
    square: int
    worker: str
    pid: int


class Probe(Experiment[ProbeInput, ProbeOutput]):
    """Records every execution (one file each) and which worker ran it."""

    name = "probe"
    recursion = RecursionPolicy(factor=4, max_depth=1)

    def run(self, spec: ProbeInput, ctx: LeafContext) -> ProbeOutput:
        if spec.counter_dir:
            marker = f"{spec.i}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            Path(spec.counter_dir, marker).write_text(os.environ.get("SCYTHE_WORKER_NAME", ""))
        time.sleep(spec.seconds)
        return ProbeOutput(
            square=spec.i * spec.i,
            worker=os.environ.get("SCYTHE_WORKER_NAME", ""),
            pid=os.getpid(),
        )


class RowsProbe(Probe):
    """The probe with batches sized for a minute: however long a busy machine makes its two
    probe leaves look (wall time, scheduling delays included), the batches after them stay
    well above INLINE_SPECS, so which ones travel as row runs follows from guided sizing alone."""

    name = "probe_rows"
    min_batch_seconds = 60.0


class HighMemoryProbe(Probe):
    """The same probe, routed to workers labelled high_memory."""

    name = "probe_high_memory"
    worker_labels = frozenset({WorkerLabel.HIGH_MEMORY})


class FinishingProbeInput(ProbeInput):
    done_dir: str = ""


class FinishingProbe(Experiment[FinishingProbeInput, ProbeOutput]):
    """Like Probe, and also writes a "done" marker in done_dir when run() returns."""

    name = "probe_finishing"
    recursion = RecursionPolicy(factor=4, max_depth=1)

    def run(self, spec: FinishingProbeInput, ctx: LeafContext) -> ProbeOutput:
        worker = os.environ.get("SCYTHE_WORKER_NAME", "")
        if spec.counter_dir:
            marker = f"{spec.i}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            Path(spec.counter_dir, marker).write_text(worker)
        time.sleep(spec.seconds)
        if spec.done_dir:
            marker = f"{spec.i}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            Path(spec.done_dir, marker).write_text(worker)
        return ProbeOutput(square=spec.i * spec.i, worker=worker, pid=os.getpid())


def executions(counter_dir: Path) -> dict[int, int]:
    counts: dict[int, int] = {}
    for path in counter_dir.iterdir():
        index = int(path.name.split("-", 1)[0])
        counts[index] = counts.get(index, 0) + 1
    return counts
