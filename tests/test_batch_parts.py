"""A broken batch's surviving specs regroup into a few batches of adjacent rows."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from scythe_oo.engines.local_dispatch import SPLIT_WAYS, Rows, _parts


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
