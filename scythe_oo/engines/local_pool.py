"""The local engine's worker processes: forked once, replaced when one dies, watched from outside.

A worker process can die under a leaf (a segfault, the out-of-memory killer, someone's
``kill -9``) or hang in it (C code that never returns, a leaf that blocks the timeout signal).
This module keeps the pool alive through both and says what happened, so that the dispatcher
can decide whose failure it was:

- each worker publishes, in shared memory, the sort_index and deadline of the leaf it runs;
  a monitor thread in the driver kills a worker whose leaf has overstayed its deadline by a
  grace period, and remembers that leaf as timed out;
- each worker also publishes the token of the batch it runs (``run_marked``), so that when one
  dies, the batches that were only in flight beside it can be told from the one it ran;
- when a worker dies, the pool is replaced once, and the death is classified from the dead
  process's exit status and the kernel's count of out-of-memory kills.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import multiprocessing.sharedctypes
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Literal, ParamSpec, TypeVar

import attrs

from scythe_oo.leaf.deadline import set_watch

MONITOR_SECONDS = 0.25
"""How often the driver looks at the workers' deadlines."""

_FIELDS = 4  # per worker: pid, sort_index of the running leaf (-1: none), deadline, batch token

_SLOT: list[Any] = []
"""In a pool worker: [shared table, this worker's first field]."""

DeathKind = Literal["timeout", "memory", "outside", "crash"]


@attrs.frozen
class WorkerDeath:
    """Why a pool broke: a leaf overstayed its deadline (and was killed for it), the kernel ran
    out of memory, something outside sent SIGKILL or SIGTERM, or the process crashed by
    itself (a signal such as SIGSEGV, or an exit)."""

    kind: DeathKind
    detail: str
    culprits: frozenset[int] | None = None
    """The ``run_marked`` tokens of the batches that ran in the processes that died by
    themselves or were killed (not those the pool ended because another died); None when
    the exit statuses cannot tell them apart."""


def grace_seconds(timeout: float) -> float:
    """How long past its deadline a leaf may run before its worker is killed: time for the
    in-process interruption to work first, proportionate to the timeout."""
    return min(60.0, max(1.0, 0.1 * timeout))


def _warm_up() -> int:
    return os.getpid()


def _init_worker(parent: int, table: Any, slots: Any) -> None:
    """Runs first in every forked pool worker."""
    # Everything inherited from the driver (its modules, the caller's specs, ...) is frozen
    # out of the cyclic collector's reach: a full collection in a worker would otherwise scan
    # the whole copied heap, writing to every page of it (copy-on-write), and took 150-200 ms
    # per worker in a 20,000-leaf run whose leaves took 200 ms in all.
    gc.freeze()
    # Ctrl-C in a terminal reaches the whole process group; the driver decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with slots.get_lock():
        slot = slots.value
        slots.value += 1
    base = slot * _FIELDS
    table[base] = os.getpid()
    table[base + 1] = -1
    table[base + 3] = 0
    _SLOT[:] = [table, base]

    def watch(sort_index: int, due: float) -> None:
        # The deadline before the leaf that owns it: the monitor reads the leaf, then the
        # deadline, then the leaf again, so it never pairs a leaf with another's deadline.
        if sort_index >= 0:
            table[base + 2] = due
        table[base + 1] = sort_index

    set_watch(watch)
    _exit_with_parent(parent)


P = ParamSpec("P")
R = TypeVar("R")


def run_marked(token: int, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """In a pool worker: ``work(*args)`` with ``token`` published as the batch this process
    runs, so that the pool can say whose batch was running if the process dies
    (``WorkerDeath.culprits``)."""
    _mark(token)
    try:
        return work(*args, **kwargs)
    finally:
        _mark(0)


def _mark(token: int) -> None:
    if _SLOT:
        table, base = _SLOT
        table[base + 3] = token


def _exit_with_parent(parent: int) -> None:
    """Pool workers block on their queue forever if the driver is killed with SIGKILL; this
    watchdog ends them instead of leaving orphans that keep files open."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.2)
        os._exit(1)

    threading.Thread(target=watch, name="scythe-parent-watch", daemon=True).start()


def oom_kills() -> int | None:
    """How many processes the kernel has killed for lack of memory (Linux), or None."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reaped(processes: list[Any], patience: float = 2.0) -> list[Any]:
    """``processes`` once each has an exit status, or ``patience`` seconds have passed.

    The pool ends the survivors itself and its own thread reaps them all; a status read while
    that thread is reaping the same process reads as None for a moment (both call waitpid,
    one of them wins), so a missing status is asked for again rather than taken as "alive".
    """
    deadline = time.monotonic() + patience
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
        while process.exitcode is None and time.monotonic() < deadline:
            time.sleep(0.01)
    return processes


class LeafPool:
    """A process pool for leaf batches that survives dead workers and kills stuck ones."""

    def __init__(self, workers: int, grace: float) -> None:
        self.workers = workers
        self.grace = grace
        self._lock = threading.Lock()
        self._executor: ProcessPoolExecutor | None = None
        self._table: Any = None
        self._deaths: weakref.WeakKeyDictionary[ProcessPoolExecutor, WorkerDeath] = (
            weakref.WeakKeyDictionary()
        )
        self._timed_out: dict[int, float] = {}
        self._killed: set[int] = set()
        self._oom_kills = oom_kills()
        self._closed = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        """Fork the first workers, then start watching them. Forking before the monitor
        thread exists means no child inherits a lock held by a thread of ours."""
        self._executor = self._new_executor()
        self._monitor = threading.Thread(target=self._watch, name="scythe-deadlines", daemon=True)
        self._monitor.start()

    @property
    def executor(self) -> ProcessPoolExecutor:
        assert self._executor is not None, "LeafPool.start() first"
        return self._executor

    def _new_executor(self) -> ProcessPoolExecutor:
        table = multiprocessing.sharedctypes.RawArray("d", self.workers * _FIELDS)
        slots = multiprocessing.get_context("fork").Value("i", 0)
        executor = ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_init_worker,
            initargs=(os.getpid(), table, slots),
        )
        # With "fork", the first submit forks every worker at once.
        executor.submit(_warm_up).result()
        self._table = table
        return executor

    def replace_broken(self, broken: ProcessPoolExecutor) -> WorkerDeath:
        """Start a fresh pool, once, however many in-flight batches noticed the death; each of
        them learns the same reason."""
        with self._lock:
            death = self._deaths.get(broken)
            if death is None:
                death = self._deaths[broken] = self._classify(broken)
            if self._executor is broken:
                broken.shutdown(wait=False, cancel_futures=True)
                self._executor = self._new_executor()
            return death

    def take_timeout(self, sort_index: int) -> float | None:
        """How long past its deadline ``sort_index`` ran before its worker was killed, if it
        was; asking forgets the answer."""
        with self._lock:
            return self._timed_out.pop(sort_index, None)

    def close(self) -> None:
        self._closed.set()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _classify(self, broken: ProcessPoolExecutor) -> WorkerDeath:
        """Why ``broken`` broke, and whose batches were running in the processes that died
        (called with the lock held, before the broken pool's table is replaced)."""
        codes, dead = [], []
        for process in _reaped(list((getattr(broken, "_processes", None) or {}).values())):
            code = process.exitcode
            if code is not None and code != 0:
                if process.pid in self._killed:
                    detail = "it was killed for overrunning its timeout"
                    return WorkerDeath("timeout", detail, self._batches_of([process.pid]))
                codes.append(code)
                if code != -signal.SIGTERM:
                    dead.append(process.pid)
        # The pool terminates the surviving workers itself (SIGTERM) once one has died.
        own = [code for code in codes if code != -signal.SIGTERM] or codes
        culprits = self._batches_of(dead) if dead else None
        kills = oom_kills()
        if kills is not None and self._oom_kills is not None and kills > self._oom_kills:
            self._oom_kills = kills
            return WorkerDeath("memory", "the kernel's out-of-memory killer ended it", culprits)
        if not own or own[0] in (-signal.SIGKILL, -signal.SIGTERM):
            name = signal.Signals(-own[0]).name if own else "SIGTERM"
            return WorkerDeath("outside", f"it was killed from outside ({name})", culprits)
        code = own[0]
        if code < 0:
            return WorkerDeath("crash", f"it died of {signal.Signals(-code).name}", culprits)
        return WorkerDeath("crash", f"it exited with status {code}", culprits)

    def _batches_of(self, pids: list[int]) -> frozenset[int]:
        """The batch tokens the workers ``pids`` had published when they died."""
        table, found = self._table, set()
        for slot in range(self.workers):
            base = slot * _FIELDS
            if int(table[base]) in pids and int(table[base + 3]) > 0:
                found.add(int(table[base + 3]))
        return frozenset(found)

    def _watch(self) -> None:
        while not self._closed.wait(MONITOR_SECONDS):
            table = self._table
            now = time.monotonic()
            for slot in range(self.workers):
                base = slot * _FIELDS
                pid, sort_index, due = int(table[base]), int(table[base + 1]), table[base + 2]
                if pid <= 0 or sort_index < 0 or now < due + self.grace:
                    continue
                if int(table[base + 1]) != sort_index:
                    continue  # that leaf ended while we looked
                with self._lock:
                    self._timed_out[sort_index] = now - due
                    self._killed.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                table[base + 1] = -1
