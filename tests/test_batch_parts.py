"""How the local engine cuts a node's leaves into batches: a window's batches keep every
worker busy to its end, and a broken batch's surviving specs regroup into a few batches of
adjacent rows."""

from __future__ import annotations

import collections
import heapq
import itertools
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from scythe_oo.engines.local_dispatch import SPLIT_WAYS, TAIL_SECONDS, Rows, _parts, guided_batch


def window_seconds(
    n: int, workers: int, per_leaf: float, min_batch_seconds: float
) -> tuple[float, list[int]]:
    """How long ``n`` leaves of ``per_leaf`` seconds take on ``workers`` processes, cut by
    ``guided_batch`` the way ``LocalDispatcher.run_leaves`` cuts them (two lanes per worker,
    each taking the next batch as its last one returns, the pool's processes taking queued
    batches first come, first served), and the batch sizes in the order they were cut. Round
    trips are free here; only the cuts count."""
    remaining, now, idle = n, 0.0, workers
    sizes: list[int] = []
    queued: collections.deque[tuple[int, int]] = collections.deque()
    running: list[tuple[float, int]] = []

    def take(lane: int) -> None:
        nonlocal remaining
        if remaining > 0:
            size = guided_batch(remaining, workers, per_leaf, min_batch_seconds)
            sizes.append(size)
            if size < 1:  # the test fails on it rather than loop forever
                remaining = 0
                return
            remaining -= size
            queued.append((lane, size))

    for lane in range(2 * workers):
        take(lane)
    while queued or running:
        while idle and queued:
            lane, size = queued.popleft()
            heapq.heappush(running, (now + size * per_leaf, lane))
            idle -= 1
        now, lane = heapq.heappop(running)
        idle += 1
        take(lane)
    return now, sizes


@settings(deadline=None)  # a window of single-leaf batches simulates 65,536 of them
@given(
    workers=st.integers(1, 64),
    n=st.integers(1, 65_536),
    per_leaf=st.floats(1e-6, 0.1),
    min_batch_seconds=st.sampled_from([0.0, 0.1, 0.5, 5.0]),
)
def test_a_windows_batches_keep_every_worker_busy_to_its_end(
    workers: int, n: int, per_leaf: float, min_batch_seconds: float
) -> None:
    """A window ends about when its work shared by the workers would, however many there are.
    The slack is two of the smallest batches a tail is cut into and one leaf; a batch of half
    a window (the cap that served 2 workers) kept 16 workers at 8 times the ideal."""
    ideal = n * per_leaf / workers
    smallest = min(math.ceil(min_batch_seconds / per_leaf), math.ceil(TAIL_SECONDS / per_leaf))
    slack = (2 * max(smallest, 1) + 1) * per_leaf
    seconds, sizes = window_seconds(n, workers, per_leaf, min_batch_seconds)
    assert min(sizes) >= 1 and sum(sizes) == n  # every leaf handed out once, no empty batch
    assert seconds <= 1.1 * ideal + slack


@given(
    start=st.integers(0, 1000),
    length=st.integers(1, 3000),
    dropped=st.sets(st.integers(0, 2999), max_size=3),
)
def test_parts_cover_each_row_once_in_few_adjacent_batches(
    start: int, length: int, dropped: set[int]
) -> None:
    batch = Rows("specs.arrow", start, start + length)
    rest = [one for k, one in enumerate(batch.single()) if k not in dropped]
    parts = _parts(rest, SPLIT_WAYS)
    assert [one for part in parts for one in part.single()] == rest
    gaps = sum(1 for a, b in itertools.pairwise(rest) if a.stop != b.start)
    assert len(parts) <= SPLIT_WAYS + gaps + 1
    assert all(len(part) <= -(-len(rest) // SPLIT_WAYS) for part in parts)
