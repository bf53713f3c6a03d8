"""Following a Hatchet run from any process that can reach the engine and the store.

The manifest is the truth once a run has ended; until then the handle asks the engine for the
run's status and counts finished leaves from the nodes' checkpoints. An included workflow
writes nothing itself, so its handle records the workflow's output when the run completes.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from scythe_oo.engine.protocol import Progress
from scythe_oo.engines.hatchet.client import hatchet_client
from scythe_oo.runfolder.layout import NODE_DONE, RunLayout
from scythe_oo.runfolder.manifest import TERMINAL_STATES, ManifestFile, RunState
from scythe_oo.storage.base import ArtifactStore

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


class HatchetRunHandle:
    """Follows a run by its Hatchet run id; works from any process that can reach the engine."""

    def __init__(self, *, run_id: str, store: ArtifactStore, layout: RunLayout) -> None:
        self.run_id = run_id
        self.store = store
        self.layout = layout
        self.folder = ManifestFile(store, layout)
        self._finished = threading.Event()
        self._output_awaited_since: float | None = None

    @property
    def engine_run_id(self) -> str | None:
        return self.run_id

    def progress(self) -> Progress:
        manifest = self.folder.read()
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
        done, failed = _leaf_counts(self.store, self.layout)
        return Progress(state=state, done=done, failed=failed, total=manifest.n_specs)

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


def _leaf_counts(store: ArtifactStore, layout: RunLayout) -> tuple[int, int]:
    """Leaves finished so far, from the journals of base-case nodes."""
    done = failed = 0
    for key in store.list_keys(layout.node_outputs):
        if key.endswith(f"/{NODE_DONE}"):
            raw = json.loads(store.get_bytes(key))
            if raw.get("leaf_parent"):
                done += int(raw["succeeded"])
                failed += int(raw["failed"])
    return done, failed


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
