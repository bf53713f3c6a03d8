"""A Hatchet leaf batch too large to carry its specs names rows of its node's specs file.

These are the two halves of that hand-off, without an engine: the dispatcher turns the rows it
wants into runs, and the leaf process reads exactly those rows back, a row group at a time,
from a local store in place or from S3 through a kept download.
"""

from __future__ import annotations

import io
import itertools
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scythe_oo import ArtifactStore
from scythe_oo.engines.hatchet.spec_rows import row_runs, spec_rows
from scythe_oo.runfolder.specs import SPEC_COLUMN

N_ROWS = 250
GROUP_ROWS = 32  # row groups of 32 rows, so runs cross group boundaries


def _specs_file(store: ArtifactStore) -> str:
    """A node's specs file: sort_index 3, 6, 9, ... (a grid-stride child), JSON per row."""
    index = [3 * i for i in range(N_ROWS)]
    table = pa.table(
        {
            "sort_index": pa.array(index, pa.int64()),
            SPEC_COLUMN: [json.dumps({"sort_index": i, "x": i / 7}) for i in index],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=GROUP_ROWS)
    key = "run/scatter-gather/input/0.pq"
    store.put_bytes(key, buffer.getvalue())
    return key


@given(st.sets(st.integers(min_value=0, max_value=N_ROWS - 1), min_size=1))
def test_row_runs_cover_exactly_the_rows_given(rows: set[int]) -> None:
    runs = row_runs(sorted(rows))
    assert [r for start, stop in runs for r in range(start, stop)] == sorted(rows)
    # runs are maximal: no two touch
    assert all(a_stop < b_start for (_, a_stop), (b_start, _) in itertools.pairwise(runs))


def test_row_runs_of_nothing_is_empty() -> None:
    assert row_runs([]) == []


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.sets(st.integers(min_value=0, max_value=N_ROWS - 1), min_size=1))
def test_the_rows_named_are_the_specs_read(
    local_or_s3_store: ArtifactStore, rows: set[int]
) -> None:
    key = _specs_file(local_or_s3_store)
    table = spec_rows(local_or_s3_store, key, row_runs(sorted(rows)))
    assert table.column("sort_index").to_pylist() == [3 * r for r in sorted(rows)]
    read = [json.loads(text) for text in table.column(SPEC_COLUMN).to_pylist()]
    assert [spec["sort_index"] for spec in read] == [3 * r for r in sorted(rows)]
    assert [spec["x"] for spec in read] == [3 * r / 7 for r in sorted(rows)]


def test_rows_past_the_end_are_an_error_that_says_why(local_or_s3_store: ArtifactStore) -> None:
    key = _specs_file(local_or_s3_store)
    with pytest.raises(ValueError, match=r"rows \[240, 260\) are not in .* which has 250 rows"):
        spec_rows(local_or_s3_store, key, [(0, 2), (240, 260)])
