"""The Hatchet tasks: one leaf task per experiment, and the durable scatter/gather task.

Declaring a task needs a client object but contacts nothing; ``register_definitions`` tells the
engine about them. A leaf task's name, input validator, timeouts, retries, backoff and desired
worker labels come from the experiment's class attributes.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from typing import Any

import attrs
import pyarrow as pa
from hatchet_sdk import Context, DesiredWorkerLabel, DurableContext, Hatchet

from scythe_oo.definition.base import REGISTRY, AnyExperiment
from scythe_oo.definition.portable import from_portable
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.definition.settings import Settings
from scythe_oo.engines.hatchet.client import client_key, hatchet_client
from scythe_oo.engines.hatchet.dispatcher import INFRASTRUCTURE_RETRIES, HatchetDispatcher
from scythe_oo.engines.hatchet.leaf_processes import TASKS_PER_PROCESS, LeafBatch, run_leaves
from scythe_oo.engines.hatchet.payloads import (
    LeafTaskInput,
    LeafTaskOutput,
    NodeTaskInput,
    NodeTaskOutput,
    leaf_input_model,
)
from scythe_oo.leaf.execute import RunContext
from scythe_oo.leaf.outcome_table import outcomes_of
from scythe_oo.runfolder.layout import ROOT_NODE
from scythe_oo.runfolder.manifest import ManifestFile
from scythe_oo.runfolder.tables import read_table
from scythe_oo.storage.factory import store_from_description
from scythe_oo.tree.collector import ResultCollector
from scythe_oo.tree.final import finalize_run
from scythe_oo.tree.job import NodeJob
from scythe_oo.tree.node import run_node
from scythe_oo.tree.node_tables import write_node

SCATTER_GATHER_TASK = "scythe_scatter_gather"


@attrs.frozen
class HatchetTasks:
    """The declared Hatchet tasks: the scatter/gather family and one task per experiment."""

    scatter_gather: Any
    leaves: dict[str, Any]
    leaf_inputs: dict[str, type[LeafTaskInput]]


_LOCK = threading.Lock()
_TASKS: dict[tuple[tuple[int, str], frozenset[str]], HatchetTasks] = {}
_REGISTERED: set[tuple[tuple[int, str], str]] = set()


def hatchet_tasks(experiments: Sequence[AnyExperiment] | None = None) -> HatchetTasks:
    """Declare (once per process) the tasks for ``experiments`` (default: all registered)."""
    classes = list(experiments) if experiments is not None else REGISTRY.all()
    key = (client_key(), frozenset(c.name for c in classes))
    with _LOCK:
        found = _TASKS.get(key)
    if found is not None:
        return found
    hatchet = hatchet_client()
    settings = Settings.from_env()
    leaves = {}
    inputs = {}
    for cls in classes:
        inputs[cls.name] = leaf_input_model(cls)
        leaves[cls.name] = _declare_leaf_task(hatchet, cls, inputs[cls.name], settings)
    tasks = HatchetTasks(
        scatter_gather=_declare_scatter_gather(hatchet, settings),
        leaves=leaves,
        leaf_inputs=inputs,
    )
    with _LOCK:
        _TASKS[key] = tasks
    return tasks


def tasks_for(cls: AnyExperiment) -> HatchetTasks:
    """The declared tasks of a worker or driver, which must include ``cls``."""
    current = client_key()
    with _LOCK:
        for (client, names), tasks in _TASKS.items():
            if client == current and cls.name in names:
                return tasks
    return hatchet_tasks([cls])


def register_definitions(tasks: HatchetTasks) -> None:
    """Tell the engine about every task, whatever this process serves.

    The engine drops runs of a task that no worker has registered yet, so a fan-only worker
    would spawn leaves into the void until a leaf worker appeared (and a driver would trigger
    a root no one knows). Registering definitions is idempotent and cheap, once per process.
    """
    admin = hatchet_client()._client.admin
    for task in [tasks.scatter_gather, *tasks.leaves.values()]:
        key = (client_key(), str(task.name))
        if key in _REGISTERED:
            continue
        admin.put_workflow(task.to_proto())
        _REGISTERED.add(key)


def _declare_leaf_task(
    hatchet: Hatchet,
    cls: AnyExperiment,
    input_model: type[LeafTaskInput],
    settings: Settings,
) -> Any:
    timeouts = settings.leaf_timeouts(cls.timeouts)
    labels = [
        DesiredWorkerLabel(key=label.value, value="true", required=True)
        for label in sorted(cls.worker_labels)
    ]

    async def leaf(input: LeafTaskInput, ctx: Context) -> LeafTaskOutput:
        specs = getattr(input, "specs", [])
        batch = LeafBatch(
            experiment=cls.name,
            experiment_id=input.experiment_id,
            store=input.store,
            node=input.node,
            generation=input.generation,
            journal=not input.one_off,
            specs_json=f"[{','.join(spec.model_dump_json() for spec in specs)}]",
            specs_key=input.specs_key,
            rows=tuple(input.rows),
            retries=cls.retries,
            worker_name=_worker_name(ctx),
            first_attempt=ctx.retry_count * (cls.retries + 1) + 1,
            timeout_seconds=timeouts.execution.total_seconds(),
        )
        result = await run_leaves(batch)
        for line in result.lines:
            ctx.log(line)
        if result.table is None:
            return LeafTaskOutput(outcomes_key=result.outcomes_key)
        if input.one_off:
            store = store_from_description(input.store)
            run = RunContext(experiment_id=input.experiment_id, store=store)
            await asyncio.to_thread(
                _finish_one_off, cls, run, input.node, result.table, ctx.workflow_run_id
            )
        return LeafTaskOutput(outcomes=outcomes_of(cls.schema, result.table))

    leaf.__name__ = f"leaf_{cls.name}"
    return hatchet.task(
        name=cls.name,
        description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None,
        input_validator=input_model,
        # the leaf's own timeout is enforced in its process; this one also covers the wait
        # in the worker's queue (see leaf_processes.TASKS_PER_PROCESS)
        execution_timeout=timeouts.execution * TASKS_PER_PROCESS,
        schedule_timeout=timeouts.schedule,
        retries=cls.retries + INFRASTRUCTURE_RETRIES,
        backoff_factor=2.0,
        backoff_max_seconds=60,
        desired_worker_labels=labels or None,
    )(leaf)


def _worker_name(ctx: Context) -> str:
    name = os.environ.get("SCYTHE_WORKER_NAME")
    if name:
        return name
    try:
        worker_id = ctx.worker.id()
    except Exception:  # the worker id is informative only
        worker_id = None
    return str(worker_id) if worker_id else "hatchet"


def _finish_one_off(
    cls: AnyExperiment,
    run: RunContext,
    node: str,
    outcomes: pa.Table,
    engine_run_id: str,
) -> None:
    """A single-spec run has no tree; its leaf writes the node tables and final/ itself."""
    layout = run.layout
    folder = ManifestFile(run.store, layout)
    folder.running(engine_run_id)
    manifest = folder.read()
    job = NodeJob(
        experiment=cls.name,
        experiment_id=run.experiment_id,
        node=node,
        recursion=from_portable(manifest.recursion, RecursionPolicy),
        collector=from_portable(manifest.collector, ResultCollector),
    )
    specs = read_table(run.store, layout.specs)
    tables = job.collector.from_leaves(cls.schema, specs, outcomes, run.store)
    result = write_node(run.store, job, tables, leaf_parent=True)
    finalize_run(run.store, layout, result)


def _declare_scatter_gather(hatchet: Hatchet, settings: Settings) -> Any:
    async def scatter_gather(input: NodeTaskInput, ctx: DurableContext) -> NodeTaskOutput:
        job = input.node_job()
        cls = REGISTRY.get(job.experiment)
        store = store_from_description(input.store)
        layout = job.layout
        if job.node == ROOT_NODE:
            await asyncio.to_thread(ManifestFile(store, layout).running, ctx.workflow_run_id)
        tasks = tasks_for(cls)
        dispatcher = HatchetDispatcher(
            cls,
            store,
            input.store,
            ctx,
            node_task=tasks.scatter_gather,
            leaf_task=tasks.leaves[cls.name],
            leaf_input=tasks.leaf_inputs[cls.name],
        )
        result = await run_node(cls, job, store, dispatcher)
        if job.node == ROOT_NODE:
            await asyncio.to_thread(finalize_run, store, layout, result)
        return NodeTaskOutput.of(result)

    return hatchet.durable_task(
        name=SCATTER_GATHER_TASK,
        input_validator=NodeTaskInput,
        execution_timeout=settings.timeout_scatter_gather_execution,
        schedule_timeout=settings.timeout_scatter_gather_schedule,
        retries=2,
        backoff_factor=2.0,
        backoff_max_seconds=30,
    )(scatter_gather)
