"""Following a Hatchet run from any process that can reach the engine and the store.

The manifest is the truth once a run has ended; until then the handle asks the engine for the
run's status and counts finished leaves from the nodes' checkpoints. An included workflow
writes nothing itself, so its handle records the workflow's output when the run completes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from typing import Any

from scythe_oo.definition.base import REGISTRY
from scythe_oo.definition.settings import Settings
from scythe_oo.definition.timeouts import Timeouts
from scythe_oo.engine.protocol import Progress
from scythe_oo.engines.hatchet.client import hatchet_client
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import TERMINAL_STATES, Manifest, ManifestFile, RunState
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.journal import JournalActivity, journal_activity

log = logging.getLogger("scythe_oo.hatchet")

_STATES: dict[str, RunState] = {
    "QUEUED": "queued",
    "RUNNING": "running",
    "COMPLETED": "completed",
    "FAILED": "failed",
    "CANCELLED": "failed",
}


_INCLUDED_OUTPUT_GRACE_SECONDS = 120.0
"""How long an included run may show COMPLETED before its last tasks' outputs are visible."""


STATUS_POLL_SECONDS = 2.0
"""How often a handle asks the engine for the run's status. The manifest, read at every poll,
says when the run has ended; the engine's status is only needed to notice a run it failed or
cancelled, and each question costs the engine (and its database) CPU that leaves need."""

ACTIVITY_POLL_SECONDS = 10.0
"""How often a handle lists the journal to count leaves and date the last one."""


class HatchetRunHandle:
    """Follows a run by its Hatchet run id; works from any process that can reach the engine.

    It also watches for a run the engine has lost track of: after an engine restart, Hatchet
    can keep a run "running" forever while none of its nodes will ever resume (seen on
    hatchet-lite v0.105.0: "ordered durable completion release stalled on a missing entry").
    A run whose leaves have all gone quiet for longer than a healthy run can (see
    ``stall_limit``) is marked failed with a message saying so, and ``resume()`` continues it:
    leaves journal their own outcomes, so none that finished runs again.
    """

    def __init__(self, *, run_id: str, store: ArtifactStore, layout: RunLayout) -> None:
        self.run_id = run_id
        self.store = store
        self.layout = layout
        self.folder = ManifestFile(store, layout)
        self._finished = threading.Event()
        self._output_awaited_since: float | None = None
        self._activity: JournalActivity | None = None
        self._activity_read = -math.inf
        self._status_read = -math.inf
        self._state: RunState | None = None
        """The run's state as the engine last reported it (queued or running)."""

    @property
    def engine_run_id(self) -> str | None:
        return self.run_id

    def progress(self, manifest: Manifest | None = None) -> Progress:
        manifest = self.folder.read() if manifest is None else manifest
        if manifest.status in TERMINAL_STATES:
            self._finished.set()
            return Progress(
                state=manifest.status,
                done=manifest.counts.succeeded,
                failed=manifest.counts.failed,
                total=manifest.n_specs,
                error=manifest.error,
            )
        activity = self._journal(manifest.generation)
        now = time.monotonic()
        if self._state is not None and now - self._status_read < STATUS_POLL_SECONDS:
            return self._quiet_or(manifest, self._state, activity)
        self._status_read = now
        try:
            status = hatchet_client().runs.get_status(self.run_id)
        except Exception as exc:  # engine unreachable or run unknown: report what the store says
            log.warning("could not read the status of Hatchet run %s: %s", self.run_id, exc)
            return self._quiet_or(manifest, manifest.status, activity)
        state: RunState = _STATES.get(getattr(status, "name", str(status)), "running")
        if state == "failed":
            error = f"the Hatchet run {self.run_id} ended as {status}"
            self.folder.failed(error)
            self._finished.set()
            return Progress(state="failed", done=0, failed=0, total=manifest.n_specs, error=error)
        if state == "completed" and manifest.engine.get("included") == "true":
            return self._record_included()
        if state == "completed":
            # the root finished but its manifest write is not visible yet; report running
            state = "running"
        self._state = state
        return self._quiet_or(manifest, state, activity)

    def _journal(self, generation: int) -> JournalActivity:
        """The journal's counts, listed at most every ACTIVITY_POLL_SECONDS."""
        now = time.monotonic()
        if self._activity is None or now - self._activity_read >= ACTIVITY_POLL_SECONDS:
            self._activity = journal_activity(self.store, self.layout.journals, generation)
            self._activity_read = now
        return self._activity

    def _quiet_or(self, manifest: Manifest, state: RunState, activity: JournalActivity) -> Progress:
        """``state`` with the leaf counts, or failed when the run has been quiet too long."""
        total = manifest.n_specs
        if state in ("queued", "running") and not manifest.one_off:
            since = max(activity.last_ns / 1e9, _attempt_started(manifest))
            quiet, limit = time.time() - since, stall_limit(manifest)
            if quiet > limit:
                error = (
                    f"no leaf of this run has finished for {quiet:.0f} s (the limit is "
                    f"{limit:.0f} s) although Hatchet reports it {state}: the engine or its "
                    "workers may have restarted and lost track of it. resume() continues the "
                    "run; leaves that finished are not run again."
                )
                self.folder.failed(error)
                self._finished.set()
                return Progress(
                    state="failed",
                    done=activity.succeeded,
                    failed=activity.failed,
                    total=total,
                    error=error,
                )
        return Progress(state=state, done=activity.succeeded, failed=activity.failed, total=total)

    def _record_included(self) -> Progress:
        """An included workflow writes nothing itself: its follower records its output."""
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
            self.folder.failed(error)
            self._finished.set()
            return Progress(state="failed", done=0, failed=1, total=1, error=error)
        self.store.put_bytes(self.layout.final_output, json.dumps(output, default=str).encode())
        self.folder.finished(succeeded=1, failed=0)
        self._finished.set()
        return Progress(state="completed", done=1, failed=0, total=1)

    def join(self, timeout: float | None = None) -> bool:
        return self._finished.wait(timeout)


def stall_limit(manifest: Manifest) -> float:
    """How long a healthy run can go without a finished leaf: a leaf may wait its schedule
    timeout for a worker and then run its execution timeout (SCYTHE_STALL_SECONDS overrides)."""
    settings = Settings.from_env()
    if settings.stall_seconds is not None:
        return settings.stall_seconds
    declared = (
        REGISTRY.get(manifest.experiment_name).timeouts
        if manifest.experiment_name in REGISTRY
        else Timeouts()
    )
    leaf = settings.leaf_timeouts(declared)
    return leaf.execution.total_seconds() + leaf.schedule.total_seconds() + 300.0


def _attempt_started(manifest: Manifest) -> float:
    """When the run's current attempt began (allocate, or its latest resume or retry)."""
    stamp = manifest.attempts[-1]["at"] if manifest.attempts else manifest.created_at
    try:
        return dt.datetime.fromisoformat(str(stamp)).timestamp()
    except ValueError:
        return time.time()


def final_output(details: Any) -> Any | None:
    """The output of a finished workflow run, read from its DAG's last tasks.

    The engine's run-level ``output`` is not a safe source: just after a DAG finishes it can
    still hold an earlier task's output (seen in CI on hatchet-lite v0.105.0). The shape says
    which tasks nothing depends on; their outputs are the run's result. ``None`` means those
    outputs are not all visible yet, so the caller asks again later rather than record a wrong
    result. One last task gives its output; several give ``{task_name: output}``.
    """
    shape = list(details.shape)
    if not shape:  # no DAG to read: the run-level output is all there is
        return details.run.output
    by_task = {str(task.task_external_id): task for task in details.tasks}
    outputs: dict[str, Any] = {}
    for step in shape:
        if step.children_step_ids:
            continue
        task = by_task.get(str(step.task_external_id))
        if task is None or getattr(task.status, "name", str(task.status)) != "COMPLETED":
            return None
        outputs[str(step.task_name)] = task.output
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs
