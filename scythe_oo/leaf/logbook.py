"""A leaf's log: the lines ``ctx.log`` writes, kept in the run folder as they come.

A researcher debugging a sweep wants to read what one leaf said, from any machine, while it
runs and after it failed, without configuring logging on every worker. So each leaf's lines go
to ``logs/<leaf id>.log`` in the run's store, whatever the engine. Stores write whole objects
atomically (S3 has no append), so the object is rewritten with everything kept so far: at once
for the first line, then at most once per ``flush_seconds`` while lines keep coming (a
background thread writes the last ones when they stop), and once more when the leaf ends.

Two bounds keep a chatty leaf from filling the store or the worker's memory: a line is cut at
``line_chars`` characters, and a leaf keeps its first ``head_lines`` lines and its last
``max_lines - head_lines``, with one line counting what was dropped between them. Every line is
redacted first: nothing secret reaches the run folder. Writing a log never fails a leaf: a
store error is reported on the ``scythe_oo.leaf`` logger and the leaf goes on.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

import attrs

from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.definition.redact import redact
from scythe_oo.leaf.deadline import LeafTimeoutError
from scythe_oo.runfolder.layout import RunLayout, leaf_id

if TYPE_CHECKING:
    from scythe_oo.storage.base import ArtifactStore

log = logging.getLogger("scythe_oo.leaf")


@attrs.frozen(kw_only=True)
class LogLimits:
    """How much of one leaf's log is kept, and how often it is written."""

    max_lines: int = attrs.field(default=1000, validator=attrs.validators.ge(2))
    head_lines: int = attrs.field(default=100, validator=attrs.validators.ge(1))
    line_chars: int = attrs.field(default=2000, validator=attrs.validators.ge(16))
    flush_seconds: float = 1.0
    tail_lines: int = 20
    """Lines of a failed leaf's log that go into its row of failures.pq (``log_tail``)."""

    def __attrs_post_init__(self) -> None:
        if self.head_lines >= self.max_lines:
            raise ValueError(f"head_lines ({self.head_lines}) must be below max_lines")


class LogBuffer:
    """The lines kept of one log: the first ``head_lines``, then the latest ones."""

    def __init__(self, limits: LogLimits) -> None:
        self.limits = limits
        self.head: list[str] = []
        self.tail: collections.deque[str] = collections.deque(
            maxlen=limits.max_lines - limits.head_lines
        )
        self.dropped = 0

    def add(self, line: str) -> None:
        limit = self.limits.line_chars
        if len(line) > limit:
            line = f"{line[:limit]} ... [{len(line) - limit} characters cut]"
        if len(self.head) < self.limits.head_lines:
            self.head.append(line)
            return
        if len(self.tail) == self.tail.maxlen:
            self.dropped += 1
        self.tail.append(line)

    def lines(self) -> list[str]:
        middle = [f"... [{self.dropped} lines dropped] ..."] if self.dropped else []
        return [*self.head, *middle, *self.tail]

    def render(self) -> bytes:
        return ("\n".join(self.lines()) + "\n").encode()


def stamp(now: float | None = None) -> str:
    """UTC time of day with milliseconds: what each kept line starts with."""
    moment = dt.datetime.fromtimestamp(time.time() if now is None else now, dt.UTC)
    return moment.strftime("%H:%M:%S.%f")[:-3]


DEFAULT_LIMITS = LogLimits()

_FIRST_WRITE = threading.Lock()
"""Guards the creation of a log's own lock, on its first line."""


class LeafLog:
    """The log of one leaf attempt. One is made for every leaf, so until its first line it is
    a handful of references: a leaf that never logs pays about a microsecond."""

    __slots__ = (
        "_buffer",
        "_dirty",
        "_flushed_at",
        "_lock",
        "_scheduled",
        "attempt",
        "layout",
        "leaf",
        "limits",
        "store",
        "worker",
    )
    _dirty: bool
    """Lines were kept that the stored object does not have yet."""
    _flushed_at: float
    _scheduled: bool
    """The background writer will write this log soon."""

    def __init__(
        self,
        store: ArtifactStore,
        layout: RunLayout,
        leaf: str,
        *,
        attempt: int = 1,
        worker: str = "",
        limits: LogLimits = DEFAULT_LIMITS,
    ) -> None:
        self.store = store
        self.layout = layout
        self.leaf = leaf
        self.attempt = attempt
        self.worker = worker
        self.limits = limits
        self._buffer: LogBuffer | None = None
        self._lock: threading.Lock | None = None

    @property
    def key(self) -> str:
        return self.layout.leaf_log(self.leaf)

    def _guard(self) -> threading.Lock:
        if self._lock is None:
            with _FIRST_WRITE:
                if self._lock is None:
                    self._lock = threading.Lock()
                    self._dirty = False
                    self._flushed_at = float("-inf")
                    self._scheduled = False
        return self._lock

    def write(self, message: str) -> None:
        """Keep ``message`` (redacted, one kept line per line of it) and stream it out."""
        when = stamp()
        with self._guard():
            buffer = self._buffer or self._open()
            for line in redact(str(message)).splitlines() or [""]:
                buffer.add(f"{when} {line}")
            self._dirty = True
            now = time.monotonic()
            if now - self._flushed_at >= self.limits.flush_seconds:
                self._flush_locked(now)
            elif not self._scheduled:
                self._scheduled = True
                _flusher().later(self, self._flushed_at + self.limits.flush_seconds)

    def tail(self) -> str | None:
        """The last lines kept, for a failed leaf's row of failures.pq; None when silent."""
        if self._buffer is None:
            return None
        with self._guard():
            return "\n".join(self._buffer.lines()[-self.limits.tail_lines :])

    def flush(self) -> None:
        with self._guard():
            self._flush_locked(time.monotonic())

    def close(self) -> None:
        """Write whatever is not written yet; called when the leaf ends."""
        if self._buffer is None:
            return
        _flusher().cancel(self)
        self.flush()

    def _open(self) -> LogBuffer:
        """Start the buffer; a retry keeps the earlier attempts' lines above its own."""
        buffer = LogBuffer(self.limits)
        if self.attempt > 1:
            for line in _read_text(self.store, self.key).splitlines():
                buffer.add(line)
        started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        where = f" on {self.worker}" if self.worker else ""
        buffer.add(f"--- attempt {self.attempt}{where}, {started} ---")
        self._buffer = buffer
        return buffer

    def _flush_locked(self, now: float) -> None:
        self._scheduled = False
        if not self._dirty or self._buffer is None:
            return
        try:
            self.store.put_bytes(self.key, self._buffer.render())
        except LeafTimeoutError:
            raise  # the leaf's deadline, arriving while it logged: not a store error
        except Exception as exc:
            log.warning("could not write the log of leaf %s: %s", self.leaf, redact(str(exc)))
            return
        self._dirty = False
        self._flushed_at = now


def _read_text(store: ArtifactStore, key: str) -> str:
    try:
        return store.get_bytes(key).decode(errors="replace")
    except ArtifactNotFoundError:
        return ""


def read_leaf_log(store: ArtifactStore, layout: RunLayout, sort_index: int) -> str:
    """The kept log of the leaf at ``sort_index``; empty when it logged nothing (yet)."""
    return _read_text(store, layout.leaf_log(leaf_id(sort_index)))


class _Flusher:
    """Writes logs whose lines stopped coming before their next flush was due: one thread
    per process, started when first needed (a forked worker starts its own)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, LeafLog]] = {}
        self._thread = threading.Thread(target=self._run, name="scythe-leaf-logs", daemon=True)
        self._thread.start()

    def later(self, book: LeafLog, at: float) -> None:
        with self._cond:
            self._due[id(book)] = (at, book)
            self._cond.notify()

    def cancel(self, book: LeafLog) -> None:
        with self._cond:
            self._due.pop(id(book), None)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
                now = time.monotonic()
                soonest = min(at for at, _ in self._due.values())
                if soonest > now:
                    self._cond.wait(soonest - now)
                    continue
                ready = [book for at, book in self._due.values() if at <= now]
                for book in ready:
                    del self._due[id(book)]
            for book in ready:
                book.flush()


_FLUSHER: _Flusher | None = None
_FLUSHER_LOCK = threading.Lock()


def _forget_parent_flusher() -> None:
    """A forked child neither shares its parent's thread nor may wait on a lock that one of
    the parent's threads held at the fork."""
    global _FLUSHER, _FLUSHER_LOCK
    _FLUSHER, _FLUSHER_LOCK = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_flusher)


def _flusher() -> _Flusher:
    global _FLUSHER
    with _FLUSHER_LOCK:
        if _FLUSHER is None:
            _FLUSHER = _Flusher()
        return _FLUSHER
