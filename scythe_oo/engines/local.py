"""LocalEngine: the embedded default. One machine, no server.

The tree runs on an asyncio loop in a background thread of the calling process; leaves run in a
process pool, in batches sized so that each batch runs for at least the experiment's
``min_batch_seconds`` (tiny simulations then pay almost no per-task overhead). Workers are forked
before any thread of ours starts, so experiments defined in a notebook or a script work too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import threading
import traceback
from pathlib import Path

import attrs

from scythe_oo.definition.cpus import usable_cpus
from scythe_oo.definition.redact import redact
from scythe_oo.definition.settings import Settings
from scythe_oo.engine.protocol import Progress, RunHandle, RunPlan
from scythe_oo.engines.local_dispatch import LocalDispatcher
from scythe_oo.engines.local_pool import LeafPool, grace_seconds
from scythe_oo.runfolder.manifest import Manifest, ManifestFile, RunState
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.final import finalize_run
from scythe_oo.tree.node import run_node

SPLIT_ABOVE = 1_000_000
"""LocalEngine's default for ``split_above``."""


@attrs.frozen(kw_only=True)
class LocalEngine:
    """Runs everything on this machine with a pool of ``max_workers`` processes (default: one
    per CPU).

    In one process the scatter/gather tree spreads no work, and a base node runs its specs in
    windows of bounded size whatever the tree's shape, so splitting buys little: it keeps each
    node's journal (what a resume reads back) small, and costs a scatter and a merge. So a node
    splits (as far as the experiment's recursion policy allows) only when it holds more than
    ``split_above`` specs; a smaller sweep runs as one node and skips the tree's files. Set it
    to 0 to follow the recursion policy exactly, as HatchetEngine does.
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
        workers = self.max_workers or usable_cpus()
        root = attrs.evolve(plan.root, split_above=self.split_above)
        handle = LocalRunHandle(attrs.evolve(plan, root=root), workers, self.min_batch_seconds)
        handle.start()
        return handle

    def attach(self, manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
        """The run's handle while this process drives it; None when no thread of this
        process is running it (another process drives it, or its driver is gone)."""
        with _LIVE_LOCK:
            return _LIVE.get(manifest.experiment_id)

    def cancel(self, manifest: Manifest) -> None:
        """Nothing to stop: a local run is only resumed once its driver is gone."""

    def describe(self) -> dict[str, str]:
        return {
            "kind": "local",
            "max_workers": str(self.max_workers or usable_cpus()),
            "split_above": str(self.split_above),
            "host": socket.gethostname(),
            "pid": str(os.getpid()),
        }


_LIVE: dict[str, LocalRunHandle] = {}
"""Runs whose thread is alive in this process, by run folder id."""
_LIVE_LOCK = threading.Lock()


class LocalRunHandle:
    """A run executing in a background thread of this process."""

    def __init__(
        self,
        plan: RunPlan,
        workers: int,
        min_batch_seconds: float | None = None,
    ) -> None:
        self.plan = plan
        self.workers = workers
        self.min_batch_seconds = min_batch_seconds
        self.done = 0
        self.failed = 0
        self.state: RunState = "queued"
        self.error: str | None = None
        self._finished = threading.Event()
        timeout = Settings.from_env().leaf_timeouts(plan.experiment.timeouts).execution
        self.leaf_pool = LeafPool(workers, grace=grace_seconds(timeout.total_seconds()))
        self._thread: threading.Thread | None = None
        self.scratch = Path(tempfile.mkdtemp(prefix="scythe-run-"))
        """Local files for this run's workers (each node's specs, which they map into memory)."""

    @property
    def engine_run_id(self) -> str | None:
        return f"local-{os.getpid()}"

    def start(self) -> None:
        with _LIVE_LOCK:
            _LIVE[self.plan.layout.experiment_id] = self
        # The first workers are forked here, before our own threads exist, so no child
        # inherits a lock held by a thread of ours. A replacement pool is forked from the run
        # thread.
        self.leaf_pool.start()
        self._thread = threading.Thread(
            target=self._main, name=f"scythe-run-{self.plan.layout.timestamp}", daemon=False
        )
        self._thread.start()

    def progress(self, manifest: Manifest | None = None) -> Progress:
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
        try:
            self.state = "running"
            folder = ManifestFile(plan.store, plan.layout)
            folder.running(self.engine_run_id)
            dispatcher = LocalDispatcher(plan, self.workers, self)
            root = asyncio.run(run_node(plan.experiment, plan.root, plan.store, dispatcher))
            # Workers run teardown as they exit: done before the manifest says the run ended,
            # so a caller that waited sees every teardown's effects.
            self.leaf_pool.close()
            manifest = finalize_run(plan.store, plan.layout, root)
            self.state = manifest.status
        except BaseException as exc:
            self.error = redact(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
            self.state = "failed"
            # The store itself may be what failed; the handle still knows the error.
            with contextlib.suppress(Exception):
                ManifestFile(plan.store, plan.layout).failed(self.error)
        finally:
            self.leaf_pool.close()
            shutil.rmtree(self.scratch, ignore_errors=True)
            with _LIVE_LOCK:
                if _LIVE.get(plan.layout.experiment_id) is self:
                    del _LIVE[plan.layout.experiment_id]
            self._finished.set()
