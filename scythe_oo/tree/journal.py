"""LeafJournal: a base-case node's record of finished leaves, persisted in small batches.

A spot worker or the driver can die at any moment. Writing one object per leaf would make
10^6 tiny files; writing nothing until the node finishes would make a resumed run pay again for
every leaf. The journal sits between: outcome tables are appended in batches, each batch one
Parquet file (which keeps inf and NaN exactly), and a node that starts again reads them back
and dispatches only what is missing.

A batch is written once its leaves add up to ``max_seconds`` of work, or ``max_seconds`` after
the last write, so a run that dies repeats about that much work at most. A leaf that took a
minute is written at once. 20,000 leaves of a millisecond each, done before either bound is
reached, are never written at all: the node's own tables are written moments later. A node
with failed leaves journals everything, because ``retry_failed`` runs it again and takes its
successes from the journal.
"""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import attrs
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from scythe_oo.definition.schema import ExperimentSchema
from scythe_oo.leaf.outcome import OUTCOMES
from scythe_oo.leaf.outcome_table import empty_outcomes, outcome_schema, outcome_table
from scythe_oo.runfolder.tables import conform, write_parquet
from scythe_oo.storage.base import ArtifactStore

if TYPE_CHECKING:
    from scythe_oo.runfolder.layout import RunLayout

LEAF_MARK = "leaves"
"""Marks a batch its leaves journaled themselves (see ``write_outcomes``)."""


class LeafJournal:
    """Append-only outcome batches under ``scatter-gather/journal/<node>/``."""

    def __init__(
        self,
        store: ArtifactStore,
        layout: RunLayout,
        node: str,
        schema: ExperimentSchema,
        generation: int = 1,
        *,
        max_seconds: float = 5.0,
    ) -> None:
        self.store = store
        self.prefix = layout.journal_prefix(node)
        self.schema = schema
        self.generation = generation
        self._lock = threading.Lock()
        self.max_seconds = max_seconds
        self._pending: list[pa.Table] = []
        self._pending_work = 0.0
        self._last_write = time.monotonic()

    def settled(self) -> pa.Table:
        """Leaves that need not run again: every success, and the failures of the current
        generation (older failures are what ``retry_failed`` reruns), one row each."""
        parts, generations = [], []
        for key in self.store.list_keys(self.prefix + "/"):
            name = key.rsplit("/", 1)[-1]
            if not (name.startswith("g") and name.endswith((".pq", ".json", ".jsonl"))):
                continue
            table = read_batch(self.store, key, self.schema)
            parts.append(table)
            generations.append(np.full(table.num_rows, _generation(key)))
        if not parts:
            return empty_outcomes(self.schema)
        table = pa.concat_tables(parts)
        keep = _settled_rows(table, np.concatenate(generations), self.generation)
        return table.take(pa.array(keep, type=pa.int64()))

    def record(self, outcomes: pa.Table) -> None:
        """Buffer outcomes; write them once they hold enough work or enough time passed."""
        with self._lock:
            self._pending.append(outcomes)
            self._pending_work += pc.sum(outcomes.column("wall_time")).as_py() or 0.0
            now = time.monotonic()
            due = (
                self._pending_work >= self.max_seconds or now - self._last_write >= self.max_seconds
            )
            if not due:
                return
            batch, self._pending, self._pending_work = self._pending, [], 0.0
            self._last_write = now
        self._write(batch)

    def flush(self) -> None:
        with self._lock:
            batch, self._pending, self._pending_work = self._pending, [], 0.0
        self._write(batch)

    def _write(self, batch: Sequence[pa.Table]) -> None:
        if batch:
            write_outcomes(self.store, self.prefix, self.generation, pa.concat_tables(batch))


def write_outcomes(
    store: ArtifactStore,
    prefix: str,
    generation: int,
    outcomes: pa.Table,
    *,
    by_leaves: bool = False,
) -> str | None:
    """One batch file of the journal under ``prefix``, a Parquet outcome table; its key
    (None: no rows, no file). Names sort by generation, then time, so a later attempt of a
    leaf is read last.

    ``by_leaves`` marks a batch its leaves wrote themselves (on a distributed engine, as soon
    as they finish, so that nothing they did depends on their node hearing of it); its name
    also counts its successes and failures, and names the batch by its first leaf, its size
    and its last leaf, so progress can be read from names alone, each leaf counted once
    however often its task ran, whole or in parts."""
    if not outcomes.num_rows:
        return None
    stem = f"g{generation:03d}-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
    if by_leaves:
        ok = int(pc.sum(outcomes.column("ok")).as_py() or 0)
        span = pc.min_max(outcomes.column("sort_index")).as_py()
        stem += f"-{LEAF_MARK}-{ok}-{outcomes.num_rows - ok}-{span['min']}-{outcomes.num_rows}"
        stem += f"-{span['max']}"
    buffer = io.BytesIO()
    write_parquet(outcomes, buffer)
    key = f"{prefix}/{stem}.pq"
    store.put_bytes(key, buffer.getvalue())
    return key


def _settled_rows(table: pa.Table, generations: np.ndarray, generation: int) -> np.ndarray:
    """Rows of the batches (read in name order: generation, then time) that settle a leaf:
    the last row of each leaf, if it succeeded or belongs to the current generation."""
    index = table.column("sort_index").to_numpy()
    _, first_from_end = np.unique(index[::-1], return_index=True)
    latest = np.sort(len(index) - 1 - first_from_end)
    ok = table.column("ok").to_numpy(zero_copy_only=False)[latest]
    return latest[ok | (generations[latest] == generation)]  # type: ignore[no-any-return]


def settled_counts(store: ArtifactStore, prefix: str, generation: int) -> tuple[int, int]:
    """(succeeded, failed) among a node's settled leaves, needing no schema: what a process
    that cannot import the experiment can count. Batches written before 0.2 (JSON) are not
    counted."""
    return _folder_counts(store, list(store.list_keys(prefix + "/")), generation)


def _folder_counts(store: ArtifactStore, keys: Sequence[str], generation: int) -> tuple[int, int]:
    """The settled leaves of one node's batches, each leaf counted once.

    A batch its leaves wrote is counted from its name: a progress display reads this every
    few seconds, and reading 5,000 batch files each time took a core of a 2-core machine
    away from a 10^6-leaf run. A batch is read (two columns) only where its leaves may be
    elsewhere too: its task ran twice (a lost result, an engine's retry), or it gave out
    after its leaves were journaled and ran again in parts, or the node wrote failures for
    some of them. There each leaf's last row counts, as in ``LeafJournal.settled``."""
    ordered = sorted(keys, key=lambda key: key.rsplit("/", 1)[-1])
    marks = {key: leaf_mark(key) for key in ordered}
    unmarked = [key for key in ordered if marks[key] is None and _is_batch(key)]
    parts = {key: _index_and_ok(store, key) for key in unmarked}
    overlapping = _overlapping(
        {
            key: (mark.generation, *mark.span)
            for key, mark in marks.items()
            if mark is not None and mark.span is not None
        },
        {
            key: (_generation(key), table.column("sort_index").to_numpy())
            for key, table in parts.items()
        },
    )
    succeeded = failed = 0
    named = [mark for key, mark in marks.items() if mark is not None and key not in overlapping]
    for mark in _latest(named):
        succeeded += mark.ok  # a success settles its leaf for good
        if mark.generation == generation:  # older failures run again
            failed += mark.failed
    parts.update({key: _index_and_ok(store, key) for key in overlapping})
    if not parts:
        return succeeded, failed
    read = [key for key in ordered if key in parts]  # name order: generation, then time
    table = pa.concat_tables([parts[key] for key in read])
    generations = np.concatenate([np.full(parts[key].num_rows, _generation(key)) for key in read])
    keep = _settled_rows(table, generations, generation)
    good = int(table.column("ok").to_numpy(zero_copy_only=False)[keep].sum())
    return succeeded + good, failed + len(keep) - good


def _overlapping(
    spans: dict[str, tuple[int, int, int]], node_written: dict[str, tuple[int, np.ndarray]]
) -> set[str]:
    """Keys of the leaf-written batches, given as (generation, first leaf, last leaf), that
    share a leaf with another batch of their generation. Within a node, batches are runs of
    consecutive specs, so two batches' spans meet only where they share leaves."""
    found: set[str] = set()
    by_generation: dict[int, list[tuple[int, int, str]]] = {}
    for key, (generation, first, last) in spans.items():
        by_generation.setdefault(generation, []).append((first, last, key))
    for generation, runs in by_generation.items():
        runs.sort()
        reach, previous = -1, ""
        for first, last, key in runs:
            if first <= reach:
                found.update((key, previous))
            if last > reach:
                reach, previous = last, key
        written = [index for g, index in node_written.values() if g == generation]
        if written:
            leaves = np.sort(np.concatenate(written))
            firsts, lasts = (np.array([run[i] for run in runs]) for i in (0, 1))
            # a span holds a node-written leaf where some leaf lies between its ends
            held = np.searchsorted(leaves, lasts, "right") > np.searchsorted(leaves, firsts)
            found.update(key for (_, _, key), hit in zip(runs, held, strict=True) if hit)
    return found


def _is_batch(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    return name.startswith("g") and name.endswith(".pq")


def _generation(key: str) -> int:
    return int(key.rsplit("/", 1)[-1][1:].split("-", 1)[0])


def _index_and_ok(store: ArtifactStore, key: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(store.get_bytes(key)), columns=["sort_index", "ok"])


@attrs.frozen
class LeafMark:
    """What the name of a batch its leaves wrote says (see ``write_outcomes``)."""

    generation: int
    time_ns: int
    ok: int
    failed: int
    batch: tuple[str, int, int] | None
    """(node folder, first leaf, size): with the generation, the batch's identity; None in
    the older names that lack the last two."""
    span: tuple[int, int] | None = None
    """(first leaf, last leaf): None in names written before the last was added."""


def leaf_mark(key: str) -> LeafMark | None:
    """The counts in a leaf-written batch's name; None for any other file."""
    folder, _, name = key.rpartition("/")
    if not _is_batch(key):
        return None
    fields = name[:-3].split("-")
    if len(fields) not in (6, 8, 9) or fields[3] != LEAF_MARK:
        return None
    try:
        numbers = [int(fields[0][1:]), int(fields[1]), *(int(f) for f in fields[4:])]
    except ValueError:
        return None
    generation, written, ok, failed = numbers[:4]
    batch = (folder, numbers[4], numbers[5]) if len(numbers) >= 6 else None
    span = (numbers[4], numbers[6]) if len(numbers) == 7 else None
    return LeafMark(generation, written, ok, failed, batch, span)


def _latest(marks: Sequence[LeafMark]) -> list[LeafMark]:
    """The leaf marks, one per batch: where a batch was written twice, the later file, which
    holds its leaves' last outcomes."""
    found = sorted(marks, key=lambda m: (m.generation, m.time_ns))
    latest: dict[object, LeafMark] = {}
    for n, mark in enumerate(found):
        latest[n if mark.batch is None else (mark.generation, *mark.batch)] = mark
    return list(latest.values())


def read_batch(store: ArtifactStore, key: str, schema: ExperimentSchema) -> pa.Table:
    """A batch file as an outcome table: Parquet, or JSON written before 0.2 (an array, or
    one outcome per line). A distributed leaf batch's outcomes are read back this way."""
    body = store.get_bytes(key)
    if key.endswith(".pq"):
        return conform(pq.read_table(pa.BufferReader(body)), outcome_schema(schema))
    if body.lstrip().startswith(b"["):
        return outcome_table(schema, OUTCOMES.validate_json(body))
    lines = [line for line in body.splitlines() if line.strip()]
    return outcome_table(schema, OUTCOMES.validate_json(b"[" + b",".join(lines) + b"]"))


@attrs.frozen
class JournalActivity:
    """What the journal's file names say about a run: leaves finished, and when the last did."""

    succeeded: int
    failed: int
    last_ns: int
    """time.time_ns() of the newest batch, 0 when there is none."""


def journal_activity(store: ArtifactStore, prefix: str, generation: int) -> JournalActivity:
    """Progress of every node under ``prefix`` (one listing, and reads only where batches
    overlap): each leaf counted once, successes of any generation and failures of
    ``generation``; every batch dates the last activity."""
    folders: dict[str, list[str]] = {}
    last = 0
    for key in store.list_keys(prefix):
        folder, _, name = key.rpartition("/")
        fields = name.split("-")
        if name.startswith("g") and len(fields) >= 3 and fields[1].isdigit():
            last = max(last, int(fields[1]))
            folders.setdefault(folder, []).append(key)
    counts = [_folder_counts(store, keys, generation) for keys in folders.values()]
    return JournalActivity(sum(ok for ok, _ in counts), sum(bad for _, bad in counts), last)
