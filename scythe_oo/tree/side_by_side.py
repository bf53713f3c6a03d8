"""Table work done side by side, a thread each.

Parquet encoding and decoding, Arrow's sorts and takes all release the interpreter lock, so a
node's tables (a window's appends, the merges of its children) can use several cores from one
driver process.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def side_by_side(work: Callable[[T], object], items: Sequence[T], *, most: int, name: str) -> None:
    """``work`` on every item, at most ``most`` at once; returns once all are done, raising
    the first failure. One item runs in the calling thread, with no pool to start."""
    if len(items) <= 1:
        for item in items:
            work(item)
        return
    with ThreadPoolExecutor(max_workers=min(len(items), most), thread_name_prefix=name) as pool:
        list(pool.map(work, items))  # list() waits for every item and raises the first failure
