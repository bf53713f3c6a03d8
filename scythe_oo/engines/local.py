"""LocalEngine: the embedded default. One machine, no server.

The tree runs on an asyncio loop in a background thread of the calling process; leaves run in a
process pool, in batches sized so that each batch runs for at least the experiment's
``min_batch_seconds`` (tiny simulations then pay almost no per-task overhead). Workers are forked
before any thread of ours starts, so experiments defined in a notebook or a script work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import os
import socket
import threading
import time
import traceback
from concurrent.futures import ProcessPoolExecutor

import attrs

from scythe_oo.engine.protocol import Progress, RunHandle, RunPlan
from scythe_oo.engines.local_dispatch import LocalDispatcher
from scythe_oo.runfolder.manifest import Manifest, ManifestFile, RunState
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.final import finalize_run
from scythe_oo.tree.node import run_node


def _warm_up() -> int:
    return os.getpid()


def _init_worker(parent: int) -> None:
    """Runs first in every forked pool worker."""
    # Everything inherited from the driver (its modules, the caller's specs, ...) is frozen
    # out of the cyclic collector's reach: a full collection in a worker would otherwise scan
    # the whole copied heap, writing to every page of it (copy-on-write), and took 150-200 ms
    # per worker in a 20,000-leaf run whose leaves took 200 ms in all.
    gc.freeze()
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Pool workers block on their queue forever if the driver is killed with SIGKILL; this
    watchdog ends them instead of leaving orphans that keep files open."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="scythe-parent-watch", daemon=True).start()


SPLIT_ABOVE = 50_000
"""LocalEngine's default for ``split_above``."""


@attrs.frozen(kw_only=True)
class LocalEngine:
    """Runs everything on this machine with a pool of ``max_workers`` processes (default: one
    per CPU).

    In one process the scatter/gather tree does not spread any work: all it does is bound how
    many specs and outcomes the driver holds at once. So a node splits (as far as the
    experiment's recursion policy allows) only when it holds more than ``split_above`` specs;
    a smaller sweep runs as one node and skips the tree's files altogether. Set it to 0 to
    follow the recursion policy exactly, as HatchetEngine does.
    """

    max_workers: int | None = None
    split_above: int = attrs.field(
        default=SPLIT_ABOVE, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )
    min_batch_seconds: float | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(
            [attrs.validators.instance_of(int | float), attrs.validators.ge(0)]
        ),
    )
    """Overrides the experiment's ``min_batch_seconds`` for runs on this engine. 0 runs each
    leaf in a batch of its own, so its peak memory is its own: the pilot estimate does that."""

    def submit(self, plan: RunPlan) -> LocalRunHandle:
        workers = self.max_workers or os.cpu_count() or 1
        handle = LocalRunHandle(plan, workers, self.split_above, self.min_batch_seconds)
        handle.start()
        return handle

    def attach(self, manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
        return None

    def describe(self) -> dict[str, str]:
        return {
            "kind": "local",
            "max_workers": str(self.max_workers or os.cpu_count() or 1),
            "split_above": str(self.split_above),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
        }


class LocalRunHandle:
    """A run executing in a background thread of this process."""

    def __init__(
        self,
        plan: RunPlan,
        workers: int,
        split_above: int,
        min_batch_seconds: float | None = None,
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.split_above = split_above
        self.min_batch_seconds = min_batch_seconds
        self.done = 0
        self.failed = 0
        self.state: RunState = "queued"
        self.error: str | None = None
        self._finished = threading.Event()
        self._pool: ProcessPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def engine_run_id(self) -> str | None:
        return f"local-{os.getpid()}"

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(os.getpid(),),
        )
        # With "fork", the first submit forks every worker at once.
        pool.submit(_warm_up).result()
        return pool

    @property
    def pool(self) -> ProcessPoolExecutor:
        assert self._pool is not None
        return self._pool

    def replace_broken_pool(self, broken: ProcessPoolExecutor) -> None:
        """A worker process died (OOM killer, segfault, kill -9): start a fresh pool, once,
        however many in-flight batches noticed it."""
        with self._pool_lock:
            if self._pool is not broken:
                return
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def start(self) -> None:
        # The first pool is forked here, before our own thread exists, so no child inherits
        # a lock held by a thread of ours. A replacement pool is forked from the run thread.
        self._pool = self._new_pool()
        self._thread = threading.Thread(
            target=self._main, name=f"scythe-run-{self.plan.layout.timestamp}", daemon=False
        )
        self._thread.start()

    def progress(self) -> Progress:
        return Progress(
            state=self.state,
            done=self.done,
            failed=self.failed,
            total=self.plan.n_specs,
            error=self.error,
        )

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)

    def _main(self) -> None:
        plan = self.plan
        assert self._pool is not None
        try:
            self.state = "running"
            folder = ManifestFile(plan.store, plan.layout)
            folder.running(self.engine_run_id)
            dispatcher = LocalDispatcher(plan, self.workers, self)
            root = asyncio.run(run_node(plan.experiment, plan.root, plan.store, dispatcher))
            manifest = finalize_run(plan.store, plan.layout, root)
            self.state = manifest.status
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            self.state = "failed"
            # The store itself may be what failed; the handle still knows the error.
            with contextlib.suppress(Exception):
                ManifestFile(plan.store, plan.layout).failed(self.error)
        finally:
            self._pool.shutdown(wait=True)
            self._finished.set()
