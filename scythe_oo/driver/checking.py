"""Checking specs chunk by chunk: in the caller's process, or in forked helpers beside it.

allocate checks and encodes every spec before it writes anything, and the specs of a large
sweep usually come from the caller's own generator, which builds a pydantic object per spec.
In one process, building and checking take turns on one core (at 10^6 generator specs on 2
cores, 10 s building and 10 s checking) while the other cores idle. So for a large sweep a
pool of helpers, forked once (they inherit the experiment class, wherever it was defined),
checks groups of specs while the caller builds the next ones. A spec travels as the dict of
its field values, pickled: about 2 us, where validating and encoding it cost ten (a helper
forked per group paid more than that in copied pages). Results come back in the order of the
specs and are merged so that every problem is listed exactly as one process lists it.

What it costs the caller: after the fork, each page of its heap that it writes is copied once
(on the 2-vCPU test machine, 85,000 copies over 10^6 specs slowed the generator by a quarter),
which is why ``prepare_specs`` starts helpers only once a sweep has proven large.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import pickle
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import attrs
import pyarrow as pa

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.driver.input_files import LocalFiles
from scythe_oo.driver.sources import Chunk, ColumnChunk
from scythe_oo.driver.validate import Features, Problems, fields_of, validate_chunk
from scythe_oo.runfolder.spec_columns import encode_columns
from scythe_oo.runfolder.specs import UnstorableValues, encode_chunk
from scythe_oo.tree.gcpause import no_full_collections, paused_gc

Group = list[Chunk]
"""Consecutive chunks of specs, checked together."""

Add = Callable[[pa.Table], None]


def group_size(group: Group) -> int:
    """How many specs ``group`` holds."""
    return sum(len(chunk) for chunk in group)


@attrs.frozen
class ChunkCheck:
    """Checks a group of chunks: validation problems go to ``checked``, encoding problems to
    ``stored`` (in one process, the same object), encoded chunks to ``add``."""

    cls: AnyExperiment
    features: Features
    files: LocalFiles | None

    def __call__(
        self, group: Group, first: int, checked: Problems, stored: Problems, add: Add
    ) -> None:
        position = first
        for chunk in group:
            rows = self._columns(chunk, position, checked or stored, add)
            if rows is None:
                position += len(chunk)
                continue
            with paused_gc():  # building thousands of small objects; none of them form cycles
                specs = validate_chunk(self.cls, rows, position, checked)
                # Once anything is wrong, only validation goes on.
                if specs and not checked and not stored:
                    self._encode(specs, position, stored, add)
            position += len(chunk)

    def _columns(self, chunk: Chunk, first: int, problems: Problems, add: Add) -> list[Any] | None:
        """None once a ColumnChunk is encoded as columns; else the chunk's specs as rows, to
        be checked one by one (after a problem, only validation goes on)."""
        if not isinstance(chunk, ColumnChunk):
            return chunk
        encoded = None if problems else encode_columns(self.cls.schema, chunk.table)
        if encoded is None:
            return chunk.rows()
        self.features.check([], first, problems)  # plain models have none: settles the names
        add(encoded)
        return None

    def _encode(self, specs: list[Any], first: int, problems: Problems, add: Add) -> None:
        cls = self.cls
        names = self.features.check(specs, first, problems)
        tokens = self.files.tokenized(specs, first, problems) if self.files else None
        if problems:
            return
        try:
            add(encode_chunk(cls.schema, specs, names, first, tokens))
        except UnstorableValues as exc:
            for found in exc.found:
                problems.add(f"spec #{found.position}: field {found.field!r}: {found.reason}")


@attrs.frozen
class Found:
    """What one list of problems held: the first few in words, and how many in all."""

    listed: list[str]
    count: int

    @classmethod
    def of(cls, problems: Problems) -> Found:
        return cls(list(problems.listed), problems.count)

    def into(self, problems: Problems) -> None:
        for text in self.listed:
            problems.add(text)
        problems.count += self.count - len(self.listed)


@attrs.frozen
class Checked:
    """A group checked by a helper: its encoded chunks, and its problems, split into those
    of validation and those of encoding (``checked`` and ``stored``)."""

    tables: list[pa.Table]
    checked: Found
    stored: Found

    def merge(self, problems: Problems, add: Add) -> None:
        """Add this group's outcome to the sweep's, as one process would have found it: once
        anything is wrong, later specs are only validated, never encoded."""
        if problems:
            self.checked.into(problems)
            return
        # Encoding stops at the group's first problem, so whatever encoding found comes
        # before every validation problem after it.
        self.stored.into(problems)
        self.checked.into(problems)
        if not problems:
            for table in self.tables:
                add(table)


_CHECKS: dict[str, ChunkCheck] = {}
"""The check of each pool being forked: what its helpers inherit instead of unpickling it."""


def _checked(check: ChunkCheck, group: Group, first: int) -> Checked:
    checked, stored = Problems(check.cls), Problems(check.cls)
    tables: list[pa.Table] = []
    check(group, first, checked, stored, tables.append)
    return Checked(tables, Found.of(checked), Found.of(stored))


def _check_in_helper(token: str, payload: bytes, first: int) -> Checked:
    # As in the caller: a full collection would scan (and copy, page by page) the whole
    # heap the helper was forked with.
    with no_full_collections():
        return _checked(_CHECKS[token], pickle.loads(payload), first)


class HelperPool:
    """``processes`` forked helpers checking groups of specs; ``results`` yields what they
    found in the order the groups were given. A group that cannot travel (a spec of another
    experiment, a value that does not pickle) is checked here, in its turn."""

    def __init__(self, check: ChunkCheck, processes: int, patience: float) -> None:
        self.check = check
        self.processes = max(1, processes)
        self.patience = patience
        """Seconds to wait for a group's answer before the helpers are taken for stuck."""
        self._token = uuid.uuid4().hex
        self._pending: collections.deque[tuple[int, concurrent.futures.Future[Checked]]] = (
            collections.deque()
        )
        self._submitted_to = 0
        """One past the last spec handed out."""
        _CHECKS[self._token] = check
        self._executor = concurrent.futures.ProcessPoolExecutor(
            max_workers=self.processes, mp_context=multiprocessing.get_context("fork")
        )

    def __enter__(self) -> HelperPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._executor.shutdown(wait=exc_info[0] is None, cancel_futures=True)
        del _CHECKS[self._token]

    def submit(self, group: Group, first: int) -> None:
        """Hand ``group`` to a helper, or check it here when it cannot travel."""
        payload = self._payload(group)
        future: concurrent.futures.Future[Checked]
        if payload is None:
            future = concurrent.futures.Future()
            future.set_result(_checked(self.check, group, first))
        else:
            future = self._executor.submit(_check_in_helper, self._token, payload, first)
        self._pending.append((first, future))
        self._submitted_to = first + group_size(group)

    def full(self) -> bool:
        return len(self._pending) >= 2 * self.processes

    def results(self, *, wait: bool) -> Iterator[Checked]:
        """The groups' outcomes in order: those ready now (and, while twice as many groups as
        helpers are pending, the oldest, waited for: no more are held at once), or (``wait``)
        every one."""
        while self._pending and (wait or self._pending[0][1].done() or self.full()):
            first, future = self._pending.popleft()
            try:
                yield future.result(timeout=self.patience)
            except concurrent.futures.TimeoutError:
                self._stop_helpers()
                raise RuntimeError(
                    f"{self.check.cls.name}.allocate: no helper process answered for specs "
                    f"#{first} on in {self.patience:.0f} s, so they were stopped; nothing was "
                    "written. A helper forked while another thread of yours held a lock waits "
                    "for it forever: set SCYTHE_PREPARE_PROCESSES=0 to check specs in this "
                    "process alone."
                ) from None
            except BrokenProcessPool:
                # Every group in flight fails with the pool: the one that killed it is among
                # them, but the pool cannot say which.
                raise RuntimeError(
                    f"{self.check.cls.name}.allocate: a helper process died while checking "
                    f"specs #{first} to #{self._submitted_to - 1}; nothing was written. If "
                    "memory is short, set SCYTHE_PREPARE_PROCESSES=0 to check specs in this "
                    "process alone."
                ) from None

    def _stop_helpers(self) -> None:
        """Kill the helpers: a stuck one would otherwise keep allocate waiting at exit."""
        for process in list((getattr(self._executor, "_processes", None) or {}).values()):
            process.kill()

    def _payload(self, group: Group) -> bytes | None:
        """The group as dicts of field values, as validation sees them; None where that
        would change what validation says (a spec of another experiment, an object that is
        neither a spec nor a dict) or where a value cannot be pickled."""
        input_type = self.check.cls.schema.input_type
        rows: list[list[Any]] = []
        for chunk in group:
            if isinstance(chunk, ColumnChunk):
                return None  # columns are checked faster here than they would travel
            rows.append([fields_of(input_type, item) for item in chunk])
        if any(type(row) is not dict for chunk in rows for row in chunk):
            return None
        try:
            return pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            return None
