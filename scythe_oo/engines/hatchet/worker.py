"""WorkerConfig: what one distributed worker serves, configured by SCYTHE_WORKER_*.

A worker has two possible roles: *fan* (the scatter/gather nodes: splitting specs, spawning
children, gathering tables; I/O-bound) and *leaf* (the simulations themselves; CPU-bound). Large
deployments run them as separate fleets; a laptop rehearsal runs both in one process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import attrs

from scythe_oo.definition.base import REGISTRY, AnyExperiment
from scythe_oo.definition.cpus import usable_cpus
from scythe_oo.definition.labels import WorkerLabel
from scythe_oo.definition.settings import Settings
from scythe_oo.engines.hatchet.client import hatchet_client
from scythe_oo.engines.hatchet.leaf_processes import (
    TASKS_PER_PROCESS,
    start_leaf_processes,
    stop_leaf_processes,
)
from scythe_oo.engines.hatchet.tasks import hatchet_tasks, register_definitions

log = logging.getLogger("scythe_oo.hatchet")

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off", ""}


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r} is not a boolean; use true or false")


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r} must be at least 1")
    return value


def default_slots(cpu_count: int | None = None) -> int:
    """One slot per CPU below 8 CPUs; from 8 up, leave one CPU for the worker itself."""
    cpus = cpu_count or usable_cpus()
    return cpus if cpus < 8 else cpus - 1


def environment_worker_name(environ: dict[str, str] | None = None) -> str:
    """A name that says where the worker runs: AWS Batch array index, Copilot environment,
    Fly region, else Local."""
    env = os.environ if environ is None else environ
    if "AWS_BATCH_JOB_ARRAY_INDEX" in env:
        return f"ScytheWorker--AWSBatch{int(env['AWS_BATCH_JOB_ARRAY_INDEX']):04d}"
    if "COPILOT_ENVIRONMENT_NAME" in env:
        return f"ScytheWorker--AWSCopilot{env['COPILOT_ENVIRONMENT_NAME'].upper()}"
    if "FLY_REGION" in env:
        return f"ScytheWorker--Fly{env['FLY_REGION'].upper()}"
    return "ScytheWorker--Local"


@attrs.frozen(kw_only=True)
class WorkerConfig:
    """A worker's settings; each field defaults to its SCYTHE_WORKER_* variable."""

    name: str = attrs.field(
        factory=lambda: os.environ.get("SCYTHE_WORKER_NAME") or environment_worker_name()
    )
    slots: int = attrs.field(factory=lambda: _env_int("SCYTHE_WORKER_SLOTS") or default_slots())
    durable_slots: int = attrs.field(
        factory=lambda: _env_int("SCYTHE_WORKER_DURABLE_SLOTS") or 1000
    )
    high_memory: bool = attrs.field(factory=lambda: _env_bool("SCYTHE_WORKER_HIGH_MEMORY", False))
    high_cpu: bool = attrs.field(factory=lambda: _env_bool("SCYTHE_WORKER_HIGH_CPU", False))
    has_gpu: bool = attrs.field(factory=lambda: _env_bool("SCYTHE_WORKER_HAS_GPU", False))
    does_fan: bool = attrs.field(factory=lambda: _env_bool("SCYTHE_WORKER_DOES_FAN", True))
    does_leaf: bool = attrs.field(factory=lambda: _env_bool("SCYTHE_WORKER_DOES_LEAF", True))

    def __attrs_post_init__(self) -> None:
        if not (self.does_fan or self.does_leaf):
            raise ValueError(
                "SCYTHE_WORKER_DOES_FAN and SCYTHE_WORKER_DOES_LEAF are both false: this worker "
                "would serve nothing. Enable at least one role."
            )

    @property
    def labels(self) -> dict[str, str | int]:
        """Hatchet worker labels; an experiment's ``worker_labels`` require them to be "true"."""
        flags = {
            WorkerLabel.HIGH_MEMORY: self.high_memory,
            WorkerLabel.HIGH_CPU: self.high_cpu,
            WorkerLabel.HAS_GPU: self.has_gpu,
        }
        return {label.value: "true" if on else "false" for label, on in flags.items()}

    def start(
        self,
        experiments: Sequence[AnyExperiment] | None = None,
        additional_workflows: Sequence[Any] = (),
    ) -> None:
        """Serve ``experiments`` (default: every registered one) until stopped. Blocks.

        Hatchet's worker installs signal handlers and exits the process when it stops, so
        call this from a worker's main program, not from a notebook.
        """
        serve(self, experiments, additional_workflows)


def serve(
    config: WorkerConfig,
    experiments: Sequence[AnyExperiment] | None,
    additional_workflows: Sequence[Any] = (),
) -> None:
    """Start a Hatchet worker for ``experiments`` in the roles ``config`` asks for. Blocks."""
    classes = list(experiments) if experiments is not None else REGISTRY.all()
    if config.does_leaf:
        # Forked first, before the Hatchet client starts any thread (see leaf_processes).
        settings = Settings.from_env()
        longest = max(
            (settings.leaf_timeouts(c.timeouts).execution.total_seconds() for c in classes),
            default=0.0,
        )
        start_leaf_processes(config.slots, longest)
    tasks = hatchet_tasks(classes)
    register_definitions(tasks)
    workflows: list[Any] = []
    if config.does_fan:
        workflows.append(tasks.scatter_gather)
    if config.does_leaf:
        workflows.extend(tasks.leaves[c.name] for c in classes)
    workflows.extend(additional_workflows)
    log.info(
        "starting %s: fan=%s leaf=%s slots=%d experiments=%s",
        config.name,
        config.does_fan,
        config.does_leaf,
        config.slots,
        ", ".join(c.name for c in classes),
    )
    worker = hatchet_client().worker(
        config.name,
        slots=config.slots * TASKS_PER_PROCESS if config.does_leaf else config.slots,
        durable_slots=config.durable_slots,
        labels=config.labels,
        workflows=workflows,
    )
    try:
        worker.start()
    finally:
        stop_leaf_processes()
