"""The leaf deadline: a leaf that runs past its execution timeout fails.

Hatchet enforces a task's timeout from outside, but a batch of leaves shares one task and the
local pool has no timeouts at all, so each leaf arms its own. Three layers, cheapest first:

1. a signal-based timer in the worker interrupts Python code at the deadline (see
   ``Deadline`` for how it stays cheap for tiny leaves);
2. a leaf that returns after its deadline anyway (it caught the interruption, blocked the
   signal, or ran in a thread, where signals cannot reach) fails all the same;
3. a leaf that never returns (stuck in C code, signal blocked) is killed from outside: the
   process that hosts the worker watches each leaf's deadline through ``watch`` and kills a
   worker whose leaf overstays it (see engines/local_pool.py).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable


class LeafTimeoutError(TimeoutError):
    """The leaf ran longer than its execution timeout."""


_RUNNING: list[tuple[float, float]] = []
"""(monotonic deadline, timeout in seconds) of each leaf running under a deadline."""


_TIMER_DUE: list[float] = []
"""When the interval timer will fire (monotonic), if it is armed; at most one entry."""


def _alarm(signum: int, frame: object) -> None:
    _TIMER_DUE.clear()
    if not _RUNNING:
        return  # the leaf that armed the timer has finished; the next one re-arms it
    due, seconds = min(_RUNNING)
    left = due - time.monotonic()
    if left <= 0.001:
        raise LeafTimeoutError(f"the leaf exceeded its execution timeout of {seconds:g}s")
    _arm(left)  # armed by an earlier leaf: wait for this one's own deadline


def _arm(seconds: float) -> None:
    if signal.getsignal(signal.SIGALRM) is not _alarm:
        signal.signal(signal.SIGALRM, _alarm)
    _TIMER_DUE[:] = [time.monotonic() + seconds]
    signal.setitimer(signal.ITIMER_REAL, seconds)


Watch = Callable[[int, float], None]
"""Told ``(sort_index, monotonic deadline)`` as each leaf starts and ``(-1, 0.0)`` as it ends."""

_WATCH: list[Watch] = []


def set_watch(watch: Watch | None) -> None:
    """Let a watcher outside this process follow the running leaf's deadline."""
    _WATCH[:] = [] if watch is None else [watch]


def disarm() -> None:
    """Stop the timer once a batch is over, so no alarm reaches an idle process."""
    if _TIMER_DUE and not _RUNNING:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _TIMER_DUE.clear()


class Deadline:
    """Interrupt the leaf after ``seconds`` (main thread only; Python code only).

    Arming and disarming a timer around every leaf costs more than a tiny simulation, so the
    timer is left running between leaves: when it fires, the handler compares the clock with
    the running leaf's own deadline and either raises or re-arms for the time that is left.
    A leaf thus pays a clock read, and the timer is armed about once per timeout period. The
    handler is checked (and reinstalled if user code replaced it) whenever the timer is armed.
    A class rather than a generator-based context manager, which costs a microsecond more;
    one per batch, entered once per leaf (``sort_index`` set before), for the same reason.
    """

    __slots__ = ("due", "entry", "seconds", "signals", "sort_index")

    def __init__(self, seconds: float | None, sort_index: int = -1) -> None:
        self.seconds = seconds if seconds is not None and seconds > 0 else None
        self.sort_index = sort_index
        self.entry: tuple[float, float] | None = None
        self.due: float | None = None
        # Made in the thread that runs the batch; only the main thread receives signals.
        self.signals = (
            hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
        )

    def __enter__(self) -> None:
        seconds = self.seconds
        if seconds is None:
            return
        due = self.due = time.monotonic() + seconds
        if _WATCH:
            _WATCH[0](self.sort_index, due)
        if not self.signals:
            return  # no signals here: the check on the way out still holds
        entry = self.entry = (due, seconds)
        _RUNNING.append(entry)
        if not _TIMER_DUE or _TIMER_DUE[0] > entry[0]:
            try:
                _arm(seconds)
            except BaseException:
                _RUNNING.remove(entry)
                raise

    def __exit__(self, *exc_info: object) -> None:
        if self.entry is not None:
            _RUNNING.remove(self.entry)
            self.entry = None
        if self.due is not None and _WATCH:
            _WATCH[0](-1, 0.0)

    def check(self) -> None:
        """Raise LeafTimeoutError if the leaf ended after its deadline: a leaf that caught
        the interruption, or could not receive it, has still overstayed."""
        if self.due is not None and time.monotonic() > self.due:
            raise LeafTimeoutError(f"the leaf ran past its execution timeout of {self.seconds:g}s")
