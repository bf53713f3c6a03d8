"""LeafJournal: a base-case node's record of finished leaves, persisted in small batches.

A spot worker or the driver can die at any moment. Writing one object per leaf would make
10^6 tiny files; writing nothing until the node finishes would make a resumed run pay again for
every leaf. The journal sits between: outcomes are appended in batches, each batch one
JSON-lines object, and a node that starts again reads them back and dispatches only what is
missing.

A batch is written once its leaves add up to ``max_seconds`` of work, or ``max_seconds`` after
the last write, so a run that dies repeats about that much work at most. A leaf that took a
minute is written at once. 20,000 leaves of a millisecond each, done before either bound is
reached, are never serialised at all: the node's own tables are written moments later. A node
with failed leaves journals everything, because ``retry_failed`` runs it again and takes its
successes from the journal.
"""

from __future__ import annotations

import math
import operator
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs

from scythe_oo.leaf.outcome import OUTCOMES, LeafOutcome

if TYPE_CHECKING:
    from scythe_oo.runfolder.layout import RunLayout

from scythe_oo.storage.base import ArtifactStore

_WALL_TIME = operator.attrgetter("wall_time")


class LeafJournal:
    """Append-only outcome batches under ``scatter-gather/journal/<node>/``."""

    def __init__(
        self,
        store: ArtifactStore,
        layout: RunLayout,
        node: str,
        generation: int = 1,
        *,
        max_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.prefix = layout.journal_prefix(node)
        self.generation = generation
        self._lock = threading.Lock()
        self.max_seconds = max_seconds
        self._pending: list[LeafOutcome] = []
        self._pending_work = 0.0
        self._last_write = time.monotonic()

    def settled(self) -> dict[int, LeafOutcome]:
        """Leaves that need not run again, by sort_index: every success, and the failures of
        the current generation (older failures are what ``retry_failed`` reruns)."""
        latest: dict[int, tuple[int, LeafOutcome]] = {}
        for key in self.store.list_keys(self.prefix + "/"):
            name = key.rsplit("/", 1)[-1]
            if not (name.startswith("g") and name.endswith((".json", ".jsonl"))):
                continue
            generation = int(name[1:].split("-", 1)[0])
            for outcome in _parse(self.store.get_bytes(key)):
                latest[outcome.sort_index] = (generation, outcome)
        return {
            index: outcome
            for index, (generation, outcome) in latest.items()
            if outcome.ok or generation == self.generation
        }

    def record(self, outcomes: Sequence[LeafOutcome]) -> None:
        """Buffer outcomes; write them once they hold enough work or enough time passed."""
        with self._lock:
            self._pending.extend(outcomes)
            self._pending_work += math.fsum(map(_WALL_TIME, outcomes))
            now = time.monotonic()
            due = (
                self._pending_work >= self.max_seconds or now - self._last_write >= self.max_seconds
            )
            if not (due and self._pending):
                return
            batch, self._pending, self._pending_work = self._pending, [], 0.0
            self._last_write = now
        self._write(batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._pending, self._pending_work = self._pending, [], 0.0
        self._write(batch)

    def _write(self, batch: Sequence[LeafOutcome]) -> None:
        write_outcomes(self.store, self.prefix, self.generation, batch)


def write_outcomes(
    store: ArtifactStore,
    prefix: str,
    generation: int,
    outcomes: Sequence[LeafOutcome],
    *,
    by_leaves: bool = False,
) -> None:
    """One batch file of the journal under ``prefix``: a JSON array that keeps every value
    exactly (inf and NaN included). Names sort by generation, then time, so a later attempt of
    a leaf is read last.

    ``by_leaves`` marks a batch its leaves wrote themselves (on a distributed engine, as soon
    as they finish, so that nothing they did depends on their node hearing of it); its name
    also counts its successes and failures, so progress can be read from names alone."""
    if not outcomes:
        return
    stem = f"g{generation:03d}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    if by_leaves:
        ok = sum(map(_OK, outcomes))
        stem += f"-{LEAF_MARK}-{ok}-{len(outcomes) - ok}"
    store.put_bytes(f"{prefix}/{stem}.json", OUTCOMES.dump_json(list(outcomes)))


LEAF_MARK = "leaves"
_OK = operator.attrgetter("ok")


@attrs.frozen
class JournalActivity:
    """What the journal's file names say about a run: leaves finished, and when the last did."""

    succeeded: int
    failed: int
    last_ns: int
    """time.time_ns() of the newest batch, 0 when there is none."""


def journal_activity(store: ArtifactStore, prefix: str) -> JournalActivity:
    """Progress read from batch names alone (one listing, no reads): the batches leaves wrote
    themselves count the leaves; every batch dates the last activity."""
    succeeded = failed = last = 0
    for key in store.list_keys(prefix):
        name = key.rsplit("/", 1)[-1]
        if not name.startswith("g"):
            continue
        parts = name.rsplit(".", 1)[0].split("-")
        if len(parts) >= 3 and parts[1].isdigit():
            last = max(last, int(parts[1]))
        if len(parts) == 6 and parts[3] == LEAF_MARK:
            succeeded += int(parts[4])
            failed += int(parts[5])
    return JournalActivity(succeeded, failed, last)


def _parse(body: bytes) -> list[LeafOutcome]:
    """A batch file: a JSON array, or (journals written before 0.2) one outcome per line."""
    if body.lstrip().startswith(b"["):
        return OUTCOMES.validate_json(body)
    lines = [line for line in body.splitlines() if line.strip()]
    return OUTCOMES.validate_json(b"[" + b",".join(lines) + b"]")
