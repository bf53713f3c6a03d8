"""A Hatchet worker runs its leaves in processes of its own, not in its threads.

hatchet-sdk runs a sync task in a thread of the worker process, so every leaf a worker holds
shares one interpreter lock with the others and with the event loop that talks to the engine.
CPU-bound leaves then starve the loop: on 2 cores, 2 worker processes of 8 slots took 57 s for
1,000 leaves of 20 ms CPU (the ideal is 10 s), every leaf's wall time stretched to about 120 ms,
and tasks were fetched and acknowledged late. So a worker forks a ``LeafPool`` (LocalEngine's
pool: a process that dies is replaced, one stuck past its deadline is killed) before it
connects to anything; its leaf task is async and hands each batch to the pool, and the loop
stays free to fetch the next tasks while the processes compute. The batch's outcomes are
journaled by the process that ran them, and come back as an Arrow table, or, for a batch
named by rows (see ``spec_rows``), as the key of that journal file.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from concurrent.futures.process import BrokenProcessPool

import attrs
import pyarrow as pa

from scythe_oo.definition.base import REGISTRY
from scythe_oo.engines.hatchet.spec_rows import spec_rows
from scythe_oo.engines.local_pool import LeafPool, grace_seconds, run_marked
from scythe_oo.leaf.execute import RunContext, run_batch
from scythe_oo.runfolder.spec_columns import spec_objects
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import store_from_description
from scythe_oo.tree.journal import write_outcomes

TASKS_PER_PROCESS = 3
"""Leaf tasks a worker takes per leaf process. The others wait in the pool's queue, so a
process never idles while the engine assigns the next task (on a tick of about a second,
jittered): 1,000 leaves of 20 ms on 2 processes took 53 s with one task per process and 19 s
with two. Two still left a process idle for a tick whenever a 1 s tail batch ended before the
engine's next assignment: one worker with one leaf process (a 1-vCPU machine, the engine on
its own core) ran that sweep at 0.82 of its ideal with two, and at 0.94 with three.
A queued task's wait counts against its execution timeout, which is why the leaf task's
Hatchet timeout is this many times the leaf's own (the leaf's is enforced in its process)."""

BYSTANDER_RERUNS = 3
"""How often a batch runs again, within its task, because a process beside it died. A batch
in flight when another's process dies breaks with it without being at fault; failing its task
would spend one of its Hatchet retries, and a single spec beside a crashing one became a
failure row of its own once both its tries met a crash. After this many, it fails as before."""

_POOL: list[LeafPool] = []
_TOKENS = itertools.count(1)
log = logging.getLogger(__name__)


class LeafProcessDied(Exception):
    """The process running a batch died (a crash, the out-of-memory killer, a kill from
    outside, or a leaf stuck past its timeout); Hatchet retries the batch's task, and a spec
    that fails alone every time becomes a failure row carrying this message."""


@attrs.frozen(kw_only=True)
class LeafBatch:
    """What a leaf task hands its process: everything travels by value."""

    experiment: str
    experiment_id: str
    store: dict[str, str]
    node: str
    generation: int
    journal: bool
    specs_json: str = ""
    specs_key: str = ""
    rows: tuple[tuple[int, int], ...] = ()
    """With ``specs_key``: the batch's rows of its node's specs file, instead of specs_json."""
    retries: int
    worker_name: str
    first_attempt: int
    timeout_seconds: float | None


def start_leaf_processes(processes: int, timeout_seconds: float) -> None:
    """Fork the worker's leaf processes (call it before anything starts a thread)."""
    if _POOL:
        return
    # Once here, instead of once per leaf process at its first batch; only a worker forks.
    from scythe_oo.storage.s3_client import preload  # lazily: the heavy S3 backend (boto3)

    preload()
    pool = LeafPool(processes, grace=grace_seconds(timeout_seconds))
    pool.start()
    _POOL.append(pool)


def stop_leaf_processes() -> None:
    while _POOL:
        _POOL.pop().close()


@attrs.frozen
class BatchResult:
    """A batch's outcomes: as a table, or (a batch named by rows) as the journal file's key."""

    table: pa.Table | None
    outcomes_key: str | None
    lines: list[str]


async def run_leaves(batch: LeafBatch) -> BatchResult:
    """Run a batch in one of the worker's leaf processes (in a thread where the worker has
    none); its outcomes, and the lines its leaves logged. A batch that broke only because
    another batch's process died runs again here (``BYSTANDER_RERUNS``); only the batch whose
    process died fails its task."""
    if not _POOL:
        return _result(*await asyncio.to_thread(run_leaf_batch, batch))
    pool, token, reruns = _POOL[0], next(_TOKENS), 0
    while True:
        executor = pool.executor
        try:
            sent = await asyncio.get_running_loop().run_in_executor(
                executor, run_marked, token, run_leaf_batch, batch
            )
        except BrokenProcessPool:
            death = await asyncio.to_thread(pool.replace_broken, executor)
            if death.culprits is None or token in death.culprits or reruns >= BYSTANDER_RERUNS:
                message = f"the process running this batch died: {death.detail}"
                raise LeafProcessDied(message) from None
            log.info("a leaf process beside this batch's died (%s); running it again", death.detail)
            reruns += 1
            continue
        return _result(*sent)


def _result(data: bytes, key: str | None, lines: list[str]) -> BatchResult:
    table = pa.ipc.open_stream(data).read_all() if data else None
    return BatchResult(table, key, lines)


@functools.lru_cache(maxsize=8)
def _store(description: tuple[tuple[str, str], ...]) -> ArtifactStore:
    """One store per description and process: an S3 client costs tens of milliseconds."""
    return store_from_description(dict(description))


def run_leaf_batch(batch: LeafBatch) -> tuple[bytes, str | None, list[str]]:
    """Process side: make the batch's specs in one call, run them, journal their
    outcomes, and send the outcome table back as Arrow IPC (for a batch named by rows, only
    the journal file's key), with the lines they logged."""
    cls = REGISTRY.get(batch.experiment)
    store = _store(tuple(sorted(batch.store.items())))
    run = RunContext(experiment_id=batch.experiment_id, store=store)
    if batch.rows:
        specs = spec_objects(cls.schema, spec_rows(store, batch.specs_key, list(batch.rows)))
    else:
        specs = cls.schema.spec_list.validate_json(batch.specs_json)
    lines: list[str] = []
    table = run_batch(
        cls,
        specs,
        run,
        retries=batch.retries,
        worker_name=batch.worker_name,
        timeout_seconds=batch.timeout_seconds,
        log_sink=lines.append,
        first_attempt=batch.first_attempt,
    )
    key = None
    if batch.journal:
        # Journaled here, not only by the node: if the engine loses track of the node (an
        # engine restart can), a resumed run still finds these leaves done.
        prefix = run.layout.journal_prefix(batch.node)
        key = write_outcomes(store, prefix, batch.generation, table, by_leaves=True)
    if batch.rows and key is not None:
        return b"", key, lines
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue()), None, lines
