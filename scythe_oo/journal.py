"""LeafJournal: a base-case node's record of finished leaves, persisted in small batches.

A spot worker or the driver can die at any moment. Writing one object per leaf would make
10^6 tiny files; writing nothing until the node finishes would make a resumed run pay again for
every leaf. The journal sits between: outcomes are appended in batches (every couple of thousand
leaves or few seconds), each batch one JSON-lines object, and a node that starts again reads them
back and dispatches only what is missing. The time bound is what limits the work a resumed run
repeats; the count bound only keeps tiny leaves from costing one store write per few hundred.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from scythe_oo.outcome import OUTCOME, LeafOutcome

if TYPE_CHECKING:
    from scythe_oo.layout import RunLayout
    from scythe_oo.store.base import ArtifactStore


class LeafJournal:
    """Append-only outcome batches under ``scatter-gather/journal/<node>/``."""

    def __init__(
        self,
        store: ArtifactStore,
        layout: RunLayout,
        node: str,
        generation: int = 1,
        *,
        max_pending: int = 2000,
        max_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.prefix = layout.key("scatter-gather", "journal", node)
        self.generation = generation
        self._lock = threading.Lock()
        self.max_pending = max_pending
        self.max_seconds = max_seconds
        self._pending: list[LeafOutcome] = []
        self._last_flush = time.monotonic()

    def settled(self) -> dict[int, LeafOutcome]:
        """Leaves that need not run again, by sort_index: every success, and the failures of
        the current generation (older failures are what ``retry_failed`` reruns)."""
        latest: dict[int, tuple[int, LeafOutcome]] = {}
        for key in self.store.list_keys(self.prefix + "/"):
            name = key.rsplit("/", 1)[-1]
            if not (name.startswith("g") and name.endswith(".jsonl")):
                continue
            generation = int(name[1:].split("-", 1)[0])
            for line in self.store.get_bytes(key).splitlines():
                if line.strip():
                    outcome = OUTCOME.validate_json(line)
                    latest[outcome.sort_index] = (generation, outcome)
        return {
            index: outcome
            for index, (generation, outcome) in latest.items()
            if outcome.ok or generation == self.generation
        }

    def record(self, outcomes: Sequence[LeafOutcome]) -> None:
        """Buffer outcomes; write them out once enough have gathered or enough time passed."""
        with self._lock:
            self._pending.extend(outcomes)
            due = time.monotonic() - self._last_flush >= self.max_seconds
            if not (len(self._pending) >= self.max_pending or (due and self._pending)):
                return
            batch, self._pending = self._pending, []
            self._last_flush = time.monotonic()
        self._write(batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        self._write(batch)

    def _write(self, batch: Sequence[LeafOutcome]) -> None:
        if not batch:
            return
        dump = OUTCOME.serializer.to_json  # dump_json, unwrapped
        body = b"\n".join([dump(o) for o in batch])
        # Names sort by generation then time, so a later attempt of a leaf is read last.
        name = f"g{self.generation:03d}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl"
        self.store.put_bytes(f"{self.prefix}/{name}", body)
