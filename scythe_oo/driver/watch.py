"""Following a run until it ends: one poll loop for ``wait`` and ``wait_async``, and the counts
of a run that no handle in this process follows.

The loop asks the run for a snapshot, shows it, and stops when the run has ended; between polls
the synchronous ``wait`` blocks on the engine's handle (it returns the moment a local run ends)
and ``wait_async`` yields to the event loop, so both end the same way: the display closes with
a summary line, and a run that could not finish raises ``RunFailedError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import attrs

from scythe_oo.definition.errors import RunFailedError
from scythe_oo.driver.progress import Figures, ProgressChoice, Reporter, make_reporter, summary
from scythe_oo.engine.protocol import Progress
from scythe_oo.runfolder.layout import NODE_DONE, RunLayout
from scythe_oo.runfolder.manifest import TERMINAL_STATES, Manifest
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.journal import settled_counts

ENDED = (*TERMINAL_STATES, "interrupted")

Snapshot = Callable[[], tuple[Manifest, Progress]]

POLL_SHARE = 0.01
"""Between polls a wait pauses this share of the time it has waited so far (within the bounds
of ``Watch.pause``): it notices the end of a run within about 1% of the run's length, and a
long run on S3 costs a GET of its manifest every 2 s rather than five a second (each, with the
store's work and the YAML, several milliseconds of CPU that leaves sharing the cores lose)."""

LONGEST_POLL_SECONDS = 2.0
"""The longest pause between two looks, however long the wait has gone on."""


class Watch:
    """One wait on one run: polls ``snapshot``, feeds the display, enforces the timeout."""

    def __init__(
        self,
        snapshot: Snapshot,
        *,
        label: str,
        tables: str,
        uri: str,
        timeout: float | None,
        progress: ProgressChoice,
    ) -> None:
        self.snapshot = snapshot
        self.label = label
        self.tables = tables
        self.uri = uri
        self.timeout = timeout
        self.started = time.monotonic()
        self.deadline = None if timeout is None else self.started + timeout
        self.reporter: Reporter | None = make_reporter(progress, label)
        self.last: Progress | None = None
        self.figures: Figures | None = None

    def poll(self) -> bool:
        """Look once; True when the run has ended. Raises TimeoutError past the timeout."""
        manifest, snap = self.snapshot()
        self.last = snap
        self.figures = Figures.of(self.label, manifest, snap)
        if self.reporter is not None:
            self.reporter.update(self.figures)
        if snap.state in ENDED:
            return True
        left = self.left()
        if left is not None and left <= 0:
            self.close(with_summary=False)
            raise TimeoutError(f"{self.label} still {snap.state} after {self.timeout}s")
        return False

    def left(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def pause(self, shortest: float) -> float:
        """How long to wait before the next poll: ``shortest`` at first, then POLL_SHARE of
        the time waited so far, up to LONGEST_POLL_SECONDS; less near the timeout. (A local
        run's handle returns from ``join`` the moment the run ends, whatever the pause.)"""
        waited = time.monotonic() - self.started
        step = max(shortest, min(POLL_SHARE * waited, LONGEST_POLL_SECONDS))
        left = self.left()
        return step if left is None else max(0.0, min(step, left))

    def close(self, *, with_summary: bool = True) -> None:
        reporter, self.reporter = self.reporter, None
        if reporter is None:
            return
        line = None
        ended = self.last is not None and self.last.state in ENDED
        if with_summary and ended and self.figures is not None and self.last is not None:
            line = summary(self.figures, self.tables, self.last.error)
        reporter.close(self.figures, line)

    def finish(self) -> None:
        """Close the display with the summary; raise when the run could not finish."""
        self.close()
        snap = self.last
        if snap is not None and snap.state in ("failed", "interrupted"):
            raise RunFailedError(
                f"run {self.uri} ended as {snap.state}: {snap.error or 'no detail recorded'}"
            )


def attempt_counts(snap: Progress, manifest: Manifest) -> Progress:
    """Counts for the whole run from a local handle, which counts only the leaves its own
    attempt runs: a retry of the failed specs keeps every earlier success."""
    if manifest.engine.get("kind") != "local" or not manifest.attempts:
        return snap
    last = manifest.attempts[-1]
    if last.get("reason") != "retry_failed":
        return snap
    kept = int((last.get("previous_counts") or {}).get("succeeded", 0))
    return attrs.evolve(snap, done=min(snap.total, snap.done + kept))


def stored_counts(store: ArtifactStore, layout: RunLayout, generation: int) -> tuple[int, int]:
    """Leaves finished so far, as the store shows them: the counts of every base node's
    checkpoint, plus the journaled leaves of base nodes still running. It lags the run by up
    to SCYTHE_JOURNAL_SECONDS, and is what a process that does not drive a local run can
    know of it."""
    done = failed = 0
    checkpointed = set()
    outputs = layout.node_outputs + "/"
    for key in store.list_keys(layout.node_outputs):
        if not key.endswith(f"/{NODE_DONE}"):
            continue
        raw = json.loads(store.get_bytes(key))
        if raw.get("leaf_parent"):
            done += int(raw.get("succeeded", 0))
            failed += int(raw.get("failed", 0))
            checkpointed.add(key[len(outputs) : -len(NODE_DONE) - 1])
    journals = layout.key("scatter-gather", "journal") + "/"
    running = {
        key[len(journals) :].rsplit("/", 1)[0] for key in store.list_keys(journals.rstrip("/"))
    }
    for node in sorted(running - checkpointed):
        good, bad = settled_counts(store, layout.journal_prefix(node), generation)
        done += good
        failed += bad
    return done, failed
