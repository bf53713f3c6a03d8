"""HatchetEngine: the same tree and the same experiment classes, on many machines.

The engine is an adapter. Each registered experiment becomes one Hatchet task (its leaves), and
one durable task, ``scythe_scatter_gather``, runs the engine-agnostic node logic of
``scythe_oo.node`` for every experiment. Nodes are durable, so a node waiting for its children
holds no worker slot and deep trees cannot deadlock a small pool. Children are spawned with a
deterministic ``child_key``, so a retried node re-attaches to the children it already spawned.

Payloads stay thin: a node's input is a few names and numbers, its output a few store keys;
specs and tables travel through the store. A leaf's input is its spec, its output the leaf's
scalars and the keys of its files.

Nothing here connects at import time; the client is created on first use from the
``HATCHET_CLIENT_*`` settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa

# Imported at module level because the SDK resolves task annotations at declaration time.
# This module itself is only imported when a HatchetEngine or a worker is used.
from hatchet_sdk import Context, DesiredWorkerLabel, DurableContext, Hatchet
from pydantic import BaseModel, create_model

from scythe_oo.collector import ResultCollector, spec_json
from scythe_oo.engine.base import Progress, RunHandle, RunPlan
from scythe_oo.layout import RunLayout
from scythe_oo.leaf import RunContext, run_specs
from scythe_oo.manifest import TERMINAL_STATES, Manifest
from scythe_oo.node import (
    NODE_DONE,
    ROOT,
    NodeJob,
    NodeResult,
    OutcomeSink,
    fail_run,
    finalize_run,
    mark_running,
    run_node,
    write_node,
)
from scythe_oo.outcome import LeafOutcome
from scythe_oo.registry import REGISTRY
from scythe_oo.settings import Settings
from scythe_oo.store import store_from_description

if TYPE_CHECKING:
    from scythe_oo.experiment import Experiment
    from scythe_oo.store.base import ArtifactStore
    from scythe_oo.worker import WorkerConfig

log = logging.getLogger("scythe_oo.hatchet")

SCATTER_GATHER_TASK = "scythe_scatter_gather"
SPAWN_CHUNK = 250
"""Children per spawn call. Inside a durable task the SDK sends one message per call, and
Hatchet caps messages at 4 MiB; 250 leaf inputs of a few KiB each stay far below that."""

PROBE_LEAVES = 2
"""Leaves each base node runs alone first, to measure how long one leaf takes."""

MAX_BATCH = 128
PAYLOAD_BUDGET = 32 * 1024
"""Bytes of spec JSON per leaf task at most; outputs (~300 bytes per leaf) stay small too."""

INFRASTRUCTURE_RETRIES = 1
"""Extra Hatchet-level attempts for a leaf task, on top of the experiment's ``retries``.

User errors are retried inside the task and reported as failure rows; Hatchet's retries are
for what the task cannot see: a worker killed mid-leaf or a lost heartbeat."""


class NodeTaskInput(BaseModel):
    """Input of a scatter/gather node: names and numbers only."""

    experiment: str
    experiment_id: str
    store: dict[str, str]
    node: str = ROOT
    depth: int = 0
    factor: int
    max_depth: int
    generation: int = 1
    n_specs: int = -1

    def job(self) -> NodeJob:
        return NodeJob(**self.model_dump(exclude={"store"}))

    @classmethod
    def of(cls, job: NodeJob, store: dict[str, str]) -> NodeTaskInput:
        return cls(store=store, **attrs.asdict(job))


class NodeTaskOutput(BaseModel):
    """Output of a node: the store keys of its tables and its counts."""

    node: str
    tables: dict[str, str]
    succeeded: int
    failed: int
    generation: int = 1
    leaf_parent: bool = False

    def result(self) -> NodeResult:
        return NodeResult(**self.model_dump())


class LeafTaskInput(BaseModel):
    """Common part of every experiment's leaf input; ``specs`` is typed per experiment."""

    experiment_id: str
    store: dict[str, str]
    node: str = ROOT
    one_off: bool = False
    """A single-spec run: the leaf task itself writes final/ and the manifest."""


class LeafTaskOutput(BaseModel):
    outcomes: list[LeafOutcome]


def leaf_input_model(cls: type[Experiment[Any, Any]]) -> type[LeafTaskInput]:
    """The leaf task's input validator: the common fields plus ``specs: list[InputT]``."""
    model: type[LeafTaskInput] = create_model(
        f"{cls.schema.input_type.__name__}LeafInput",
        __base__=LeafTaskInput,
        specs=(list[cls.schema.input_type], ...),  # type: ignore[name-defined]
    )
    return model


# --------------------------------------------------------------------------- the client


_CLIENT_LOCK = threading.Lock()
_CLIENTS: dict[tuple[int, str], Hatchet] = {}


def _client_key() -> tuple[int, str]:
    # A forked child needs its own connection; a changed namespace needs its own client.
    return (os.getpid(), os.environ.get("HATCHET_CLIENT_NAMESPACE", ""))


def hatchet_client() -> Hatchet:
    """One client per process and namespace, created on first use from HATCHET_CLIENT_*."""
    with _CLIENT_LOCK:
        key = _client_key()
        client = _CLIENTS.get(key)
        if client is None:
            client = Hatchet()
            _CLIENTS[key] = client
        return client


@attrs.frozen
class HatchetTasks:
    """The declared Hatchet tasks: the scatter/gather family and one task per experiment."""

    scatter_gather: Any
    leaves: dict[str, Any]
    leaf_inputs: dict[str, type[LeafTaskInput]]


_TASKS: dict[tuple[tuple[int, str], frozenset[str]], HatchetTasks] = {}


def hatchet_tasks(experiments: Sequence[type[Experiment[Any, Any]]] | None = None) -> HatchetTasks:
    """Declare (once per process) the tasks for ``experiments`` (default: all registered).

    Declaring needs a client object but contacts nothing.
    """
    classes = (
        list(experiments)
        if experiments is not None
        else [REGISTRY.get(name) for name in REGISTRY.names()]
    )
    key = (_client_key(), frozenset(c.name for c in classes))
    with _CLIENT_LOCK:
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
    with _CLIENT_LOCK:
        _TASKS[key] = tasks
    return tasks


def _declare_leaf_task(
    hatchet: Hatchet,
    cls: type[Experiment[Any, Any]],
    input_model: type[LeafTaskInput],
    settings: Settings,
) -> Any:

    execution = cls.timeouts.execution or settings.timeout_experiment_execution
    schedule = cls.timeouts.schedule or settings.timeout_experiment_schedule
    labels = [
        DesiredWorkerLabel(key=label.value, value="true", required=True)
        for label in sorted(cls.worker_labels)
    ]

    def leaf(input: LeafTaskInput, ctx: Context) -> LeafTaskOutput:
        store = store_from_description(input.store)
        run = RunContext(experiment_id=input.experiment_id, store=store)
        specs = list(getattr(input, "specs", []))
        outcomes = run_specs(
            cls,
            specs,
            run,
            retries=cls.retries,
            worker_name=_worker_name(ctx),
            log_sink=ctx.log,
            first_attempt=ctx.retry_count * (cls.retries + 1) + 1,
        )
        if input.one_off:
            _finish_one_off(cls, run, input.node, outcomes, ctx.workflow_run_id)
        return LeafTaskOutput(outcomes=outcomes)

    leaf.__name__ = f"leaf_{cls.name}"
    return hatchet.task(
        name=cls.name,
        description=(cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else None,
        input_validator=input_model,
        execution_timeout=execution,
        schedule_timeout=schedule,
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
    cls: type[Experiment[Any, Any]],
    run: RunContext,
    node: str,
    outcomes: list[LeafOutcome],
    engine_run_id: str,
) -> None:
    """A single-spec run has no tree; its leaf writes the node tables and final/ itself."""
    from scythe_oo.tables import read_table

    layout = run.layout
    mark_running(run.store, layout, engine_run_id)
    specs = read_table(run.store, layout.specs)
    tables = ResultCollector().from_leaves(cls.schema, specs, outcomes, run.store)
    job = NodeJob(
        experiment=cls.name,
        experiment_id=run.experiment_id,
        node=node,
        factor=1,
        max_depth=0,
    )
    result = write_node(run.store, job, tables, leaf_parent=True)
    finalize_run(run.store, layout, result)


def _declare_scatter_gather(hatchet: Hatchet, settings: Settings) -> Any:

    async def scatter_gather(input: NodeTaskInput, ctx: DurableContext) -> NodeTaskOutput:
        cls = REGISTRY.get(input.experiment)
        store = store_from_description(input.store)
        job = input.job()
        layout = job.layout
        if job.node == ROOT:
            await asyncio.to_thread(mark_running, store, layout, ctx.workflow_run_id)
        dispatcher = HatchetDispatcher(cls, store, input.store, tasks_for(cls), ctx)
        result = await run_node(cls, job, store, dispatcher)
        if job.node == ROOT:
            await asyncio.to_thread(finalize_run, store, layout, result)
        return NodeTaskOutput(**attrs.asdict(result))

    return hatchet.durable_task(
        name=SCATTER_GATHER_TASK,
        input_validator=NodeTaskInput,
        execution_timeout=settings.timeout_scatter_gather_execution,
        schedule_timeout=settings.timeout_scatter_gather_schedule,
        retries=2,
        backoff_factor=2.0,
        backoff_max_seconds=30,
    )(scatter_gather)


_REGISTERED: set[tuple[tuple[int, str], str]] = set()


def register_definitions(tasks: HatchetTasks) -> None:
    """Tell the engine about every task, whatever this process serves.

    The engine drops runs of a task that no worker has registered yet, so a fan-only worker
    would spawn leaves into the void until a leaf worker appeared (and a driver would trigger
    a root no one knows). Registering definitions is idempotent and cheap, once per process.
    """
    admin = hatchet_client()._client.admin
    for task in [tasks.scatter_gather, *tasks.leaves.values()]:
        key = (_client_key(), str(task.name))
        if key in _REGISTERED:
            continue
        admin.put_workflow(task.to_proto())
        _REGISTERED.add(key)


def tasks_for(cls: type[Experiment[Any, Any]]) -> HatchetTasks:
    """The declared tasks of a worker or driver, which must include ``cls``."""
    current = _client_key()
    for (client, names), tasks in list(_TASKS.items()):
        if client == current and cls.name in names:
            return tasks
    return hatchet_tasks([cls])


# --------------------------------------------------------------------------- the dispatcher


class HatchetDispatcher:
    """Runs a node's children and leaves as Hatchet child runs of the node's task."""

    def __init__(
        self,
        cls: type[Experiment[Any, Any]],
        store: ArtifactStore,
        store_description: dict[str, str],
        tasks: HatchetTasks,
        ctx: DurableContext,
    ) -> None:
        self.cls = cls
        self.store = store
        self.store_description = store_description
        self.tasks = tasks
        self.ctx = ctx

    def admission(self) -> contextlib.AbstractAsyncContextManager[Any]:
        return contextlib.nullcontext()  # each node is its own task; workers bound them

    def splits(self, job: NodeJob, n_specs: int) -> bool:
        # Every split spreads enqueuing and gathering over more workers: the policy decides.
        return job.recursion.splits(job.depth, n_specs)

    def leaf_plan_key(self, job: NodeJob) -> str | None:
        # One plan per node task run: retries and durable replays of this run share it; a
        # resumed run (new task runs) plans afresh from the journal.
        return job.layout.key("scatter-gather", "plan", job.node, f"{self.ctx.step_run_id}.json")

    def _child_key(self, job: NodeJob, suffix: str) -> str:
        # run folder + node path + index (+ generation, so retry_failed spawns afresh)
        return f"{job.experiment_id}|{suffix}|g{job.generation}"

    async def run_nodes(self, jobs: Sequence[NodeJob]) -> list[NodeResult]:
        task = self.tasks.scatter_gather
        items = [
            task.create_bulk_run_item(
                NodeTaskInput.of(job, self.store_description),
                child_key=self._child_key(job, job.node),
            )
            for job in jobs
        ]
        results: list[NodeResult] = []
        for chunk in _chunks(items, SPAWN_CHUNK):
            outputs = await task.aio_run_many(chunk)
            results.extend(_as_node_output(o).result() for o in outputs)
        return results

    async def run_leaves(
        self, job: NodeJob, specs: pa.Table, sink: OutcomeSink
    ) -> list[LeafOutcome]:
        """Probe how long one leaf takes, then dispatch the rest in batches that run for
        about ``min_batch_seconds`` each: tiny simulations then pay one Hatchet task per
        batch instead of one per leaf. Batch sizes follow from the probes' recorded times,
        so a retried node computes the same batches and re-attaches to them."""
        pending = list(zip(specs.column("sort_index").to_pylist(), spec_json(specs), strict=True))
        probes, rest = pending[:PROBE_LEAVES], pending[PROBE_LEAVES:]
        outcomes = await self._dispatch(job, [[p] for p in probes], sink)
        size = self._batch_size(outcomes, rest)
        batches = [rest[i : i + size] for i in range(0, len(rest), size)]
        return [*outcomes, *await self._dispatch(job, batches, sink)]

    def _batch_size(self, probed: Sequence[LeafOutcome], rest: Sequence[tuple[int, str]]) -> int:
        if not rest or not probed:
            return 1
        seconds = max(sorted(o.wall_time for o in probed)[len(probed) // 2], 1e-3)
        wanted = math.ceil(self.cls.min_batch_seconds / seconds)
        timeout = self.cls.timeouts.execution or Settings.from_env().timeout_experiment_execution
        # a batch must finish well inside the task's execution timeout, and its input and
        # output must stay small (a few dozen KiB) whatever the sweep size
        by_timeout = int(timeout.total_seconds() / (2 * seconds))
        by_payload = max(1, PAYLOAD_BUDGET // max(len(raw) for _, raw in rest))
        return max(1, min(wanted, by_timeout, by_payload, MAX_BATCH))

    async def _dispatch(
        self, job: NodeJob, batches: Sequence[Sequence[tuple[int, str]]], sink: OutcomeSink
    ) -> list[LeafOutcome]:
        task = self.tasks.leaves[self.cls.name]
        input_model = self.tasks.leaf_inputs[self.cls.name]

        def item(batch: Sequence[tuple[int, str]], tag: str) -> Any:
            first, count = batch[0][0], len(batch)
            return task.create_bulk_run_item(
                input_model(
                    experiment_id=job.experiment_id,
                    store=self.store_description,
                    node=job.node,
                    specs=[json.loads(raw) for _, raw in batch],
                ),
                child_key=self._child_key(job, f"{job.node}/{tag}-{first}-{count}"),
            )

        async def one_chunk(chunk: Sequence[Sequence[tuple[int, str]]]) -> list[LeafOutcome]:
            outputs = await task.aio_run_many(
                [item(batch, "leaves") for batch in chunk], return_exceptions=True
            )
            outcomes: list[LeafOutcome] = []
            lost: list[Sequence[tuple[int, str]]] = []
            for output, batch in zip(outputs, chunk, strict=True):
                if not isinstance(output, BaseException):
                    outcomes.extend(_as_leaf_output(output).outcomes)
                elif len(batch) == 1:
                    outcomes.append(_lost_leaf(batch[0][0], output, self.cls.retries))
                else:  # a whole batch gave out (timeout, lost worker): account per spec
                    lost.extend([one] for one in batch)
            if lost:
                alone = await task.aio_run_many(
                    [item(batch, "alone") for batch in lost], return_exceptions=True
                )
                for output, batch in zip(alone, lost, strict=True):
                    if isinstance(output, BaseException):
                        outcomes.append(_lost_leaf(batch[0][0], output, self.cls.retries))
                    else:
                        outcomes.extend(_as_leaf_output(output).outcomes)
            await sink(outcomes)
            return outcomes

        gathered = await asyncio.gather(*(one_chunk(c) for c in _chunks(batches, SPAWN_CHUNK)))
        return [outcome for chunk in gathered for outcome in chunk]


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


def _as_node_output(output: Any) -> NodeTaskOutput:
    if isinstance(output, NodeTaskOutput):
        return output
    return NodeTaskOutput.model_validate(output)


def _as_leaf_output(output: Any) -> LeafTaskOutput:
    if isinstance(output, LeafTaskOutput):
        return output
    return LeafTaskOutput.model_validate(output)


def _lost_leaf(sort_index: int, error: BaseException, retries: int) -> LeafOutcome:
    """A leaf task that Hatchet gave up on (timeout, cancelled, worker lost on every try)."""
    return LeafOutcome(
        sort_index=sort_index,
        leaf_id=f"{sort_index:09d}",
        ok=False,
        error_type=type(error).__name__,
        error_message=str(error)[:4000],
        traceback=None,
        attempts=retries + INFRASTRUCTURE_RETRIES + 1,
        worker="",
    )


# --------------------------------------------------------------------------- engine and handle


@attrs.frozen(kw_only=True)
class HatchetEngine:
    """Runs on Hatchet workers (``scythe-oo worker ...``). The client connection comes from
    HATCHET_CLIENT_TOKEN and related settings; nothing connects until a run is submitted."""

    def submit(self, plan: RunPlan) -> HatchetRunHandle:
        tasks = hatchet_tasks([plan.experiment])
        register_definitions(tasks)
        description = plan.store.describe()
        if plan.root.max_depth == 0 and plan.n_specs == 1:
            specs = _read_specs_json(plan)
            input_model = tasks.leaf_inputs[plan.experiment.name]
            ref = tasks.leaves[plan.experiment.name].run(
                input_model(
                    experiment_id=plan.root.experiment_id,
                    store=description,
                    one_off=True,
                    specs=[json.loads(s) for s in specs],
                ),
                wait_for_result=False,
            )
        else:
            ref = tasks.scatter_gather.run(
                NodeTaskInput.of(plan.root, description), wait_for_result=False
            )
        return HatchetRunHandle(
            run_id=str(ref.workflow_run_id), store=plan.store, layout=plan.layout
        )

    def attach(self, manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
        if not manifest.engine_run_id:
            return None
        layout = RunLayout.from_experiment_id(manifest.experiment_id)
        return HatchetRunHandle(run_id=manifest.engine_run_id, store=store, layout=layout)

    def describe(self) -> dict[str, str]:
        namespace = os.environ.get("HATCHET_CLIENT_NAMESPACE", "")
        return {"kind": "hatchet", "namespace": namespace}


def _read_specs_json(plan: RunPlan) -> list[str]:
    from scythe_oo.tables import read_table

    return spec_json(read_table(plan.store, plan.layout.specs))


_STATES = {
    "QUEUED": "queued",
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "failed",
}


_INCLUDED_OUTPUT_GRACE_SECONDS = 120.0
"""How long an included run may show COMPLETED before its last tasks' outputs are visible."""


class HatchetRunHandle:
    """Follows a run by its Hatchet run id; works from any process that can reach the engine."""

    def __init__(self, *, run_id: str, store: ArtifactStore, layout: RunLayout) -> None:
        self.run_id = run_id
        self.store = store
        self.layout = layout
        self._finished = threading.Event()
        self._output_awaited_since: float | None = None

    @property
    def engine_run_id(self) -> str | None:
        return self.run_id

    def _manifest(self) -> Manifest:
        return Manifest.from_yaml(self.store.get_bytes(self.layout.manifest))

    def progress(self) -> Progress:
        manifest = self._manifest()
        if manifest.status in TERMINAL_STATES:
            self._finished.set()
            return Progress(
                state=manifest.status,
                done=manifest.counts.succeeded,
                failed=manifest.counts.failed,
                total=manifest.n_specs,
                error=manifest.error,
            )
        try:
            status = hatchet_client().runs.get_status(self.run_id)
        except Exception as exc:  # engine unreachable or run unknown: report what the store says
            log.warning("could not read the status of Hatchet run %s: %s", self.run_id, exc)
            done, failed = _leaf_counts(self.store, self.layout)
            return Progress(state=manifest.status, done=done, failed=failed, total=manifest.n_specs)
        state = _STATES.get(getattr(status, "name", str(status)), "running")
        if state == "failed":
            error = f"the Hatchet run {self.run_id} ended as {status}"
            fail_run(self.store, self.layout, error)
            self._finished.set()
            return Progress(state="failed", done=0, failed=0, total=manifest.n_specs, error=error)
        if state == "completed" and manifest.engine.get("included") == "true":
            return self._record_included(manifest)
        if state == "completed":
            # the root finished but its manifest write is not visible yet; report running
            state = "running"
        done, failed = _leaf_counts(self.store, self.layout)
        return Progress(state=state, done=done, failed=failed, total=manifest.n_specs)

    def _record_included(self, manifest: Manifest) -> Progress:
        """An included workflow writes nothing itself: its follower records its output."""
        from scythe_oo.include import final_output, record_included_result

        output = final_output(hatchet_client().runs.get(self.run_id))
        if output is None:  # the engine has not shown the last tasks' outputs yet
            now = time.monotonic()
            if self._output_awaited_since is None:
                self._output_awaited_since = now
            if now - self._output_awaited_since < _INCLUDED_OUTPUT_GRACE_SECONDS:
                return Progress(state="running", done=0, failed=0, total=1)
            # Never record a wrong output, and never wait forever for one.
            error = (
                f"the Hatchet run {self.run_id} completed, but its last tasks did not all show "
                f"as COMPLETED within {_INCLUDED_OUTPUT_GRACE_SECONDS:.0f} s; see the run in "
                "the Hatchet dashboard"
            )
            fail_run(self.store, self.layout, error)
            self._finished.set()
            return Progress(state="failed", done=0, failed=1, total=1, error=error)
        done = record_included_result(self.store, manifest, self.layout.root, output)
        self.store.put_bytes(self.layout.manifest, done.to_yaml())
        self._finished.set()
        return Progress(state="completed", done=1, failed=0, total=1)

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)


def _leaf_counts(store: ArtifactStore, layout: RunLayout) -> tuple[int, int]:
    """Leaves finished so far, from the journals of base-case nodes."""
    done = failed = 0
    prefix = layout.key("scatter-gather", "output")
    for key in store.list_keys(prefix):
        if key.endswith(f"/{NODE_DONE}"):
            raw = json.loads(store.get_bytes(key))
            if raw.get("leaf_parent"):
                done += int(raw["succeeded"])
                failed += int(raw["failed"])
    return done, failed


# --------------------------------------------------------------------------- workers


def serve(
    config: WorkerConfig,
    experiments: Sequence[type[Experiment[Any, Any]]] | None,
    additional_workflows: Sequence[Any] = (),
) -> None:
    """Start a Hatchet worker for ``experiments`` in the roles ``config`` asks for. Blocks."""
    classes = (
        list(experiments)
        if experiments is not None
        else [REGISTRY.get(name) for name in REGISTRY.names()]
    )
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
        slots=config.slots,
        durable_slots=config.durable_slots,
        labels=config.labels,
        workflows=workflows,
    )
    worker.start()
