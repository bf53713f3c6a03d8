"""The tree floor: the streaming scatter and gather (a split must match the grid-stride partition,
and a merge must keep sort order in bounded memory), the leaf journal, and leaf outcomes' round
trips."""

from __future__ import annotations

import dataclasses
import pickle
import random
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scythe_oo import ArtifactStore, ExperimentInputSpec, ExperimentOutputSpec, LocalStore, SemVer
from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.definition.schema import ExperimentSchema
from scythe_oo.leaf.outcome import OUTCOMES, LeafOutcome
from scythe_oo.leaf.outcome_table import outcome_table, outcomes_of
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.tables import open_parquet, read_table, write_table
from scythe_oo.tree.gather import copy_parquet, merge_sorted
from scythe_oo.tree.journal import (
    LEAF_MARK,
    LeafJournal,
    journal_activity,
    settled_counts,
    write_outcomes,
)
from scythe_oo.tree.scatter import child_sizes, count_rows, split_grid_stride


@pytest.fixture
def store(local_or_s3_store: ArtifactStore) -> ArtifactStore:
    return local_or_s3_store


def grid_stride_children(n: int, factor: int) -> list[pa.Table]:
    """What a node's children hold: every factor-th row, each child sorted by sort_index."""
    return [
        pa.table(
            {
                "sort_index": pa.array(range(i, n, factor), type=pa.int64()),
                "x": [float(k) / 3 for k in range(i, n, factor)],
                "label": [f"spec-{k}" for k in range(i, n, factor)],
            }
        )
        for i in range(factor)
    ]


def store_children(store: ArtifactStore, tables: list[pa.Table]) -> list[str]:
    keys = [f"run/output/child{i}/scalars.pq" for i in range(len(tables))]
    for key, table in zip(keys, tables, strict=True):
        write_table(store, key, table)
    return keys


@pytest.mark.parametrize("budget_rows", [1, 7, 64, 100_000])
def test_merge_restores_spec_order_for_any_budget(store: ArtifactStore, budget_rows: int) -> None:
    children = grid_stride_children(1_000, factor=7)
    keys = store_children(store, children)

    written = merge_sorted(store, keys, "run/output/scalars.pq", budget_rows=budget_rows)

    merged = read_table(store, "run/output/scalars.pq")
    assert written == merged.num_rows == 1_000
    assert merged.column("sort_index").to_pylist() == list(range(1_000))
    assert merged.column("label").to_pylist() == [f"spec-{k}" for k in range(1_000)]


def test_small_budget_streams_in_many_row_groups(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    keys = store_children(store, grid_stride_children(100_000, factor=10))

    merge_sorted(store, keys, "merged.pq", budget_rows=10_000)

    meta = pq.ParquetFile(tmp_path / "merged.pq").metadata
    assert meta.num_rows == 100_000
    assert meta.num_row_groups >= 5
    assert max(meta.row_group(g).num_rows for g in range(meta.num_row_groups)) <= 15_000


def test_uneven_children_with_gaps_merge_in_order(tmp_path: Path) -> None:
    """Failed leaves leave gaps, and children differ in size: the merge must not care."""
    store = LocalStore(root=tmp_path)
    rng = random.Random(7)
    indices = sorted(rng.sample(range(100_000), 3_000))
    owners: list[list[int]] = [[], [], [], []]
    for k in indices:
        owners[rng.choice([0, 0, 0, 1, 2, 3]) if k % 5 else 3].append(k)
    tables = [pa.table({"sort_index": pa.array(o, type=pa.int64())}) for o in owners]
    keys = store_children(store, tables)

    merge_sorted(store, keys, "merged.pq", budget_rows=50)

    assert read_table(store, "merged.pq").column("sort_index").to_pylist() == indices


def test_rows_sharing_a_sort_index_keep_their_order(tmp_path: Path) -> None:
    """A user dataframe gives one spec many rows; they must stay together and in order."""
    store = LocalStore(root=tmp_path)
    a = pa.table({"sort_index": [0, 0, 0, 2, 2], "hour": [0, 1, 2, 0, 1]})
    b = pa.table({"sort_index": [1, 1, 3], "hour": [0, 1, 0]})
    keys = store_children(store, [a, b])

    merge_sorted(store, keys, "merged.pq", budget_rows=2)

    merged = read_table(store, "merged.pq")
    assert merged.column("sort_index").to_pylist() == [0, 0, 0, 1, 1, 2, 2, 3]
    assert merged.column("hour").to_pylist() == [0, 1, 2, 0, 1, 0, 1, 0]


def test_types_are_promoted_and_missing_columns_filled(tmp_path: Path) -> None:
    """One child saw only ints where another saw floats, one saw only nulls, one lacks a
    column: the merged table takes the widest type and fills the gap with nulls."""
    store = LocalStore(root=tmp_path)
    ints = pa.table({"sort_index": pa.array([0, 2], pa.int64()), "y": pa.array([1, 2])})
    floats = pa.table({"sort_index": pa.array([1], pa.int64()), "y": pa.array([0.5])})
    nulls = pa.table(
        {"sort_index": pa.array([3], pa.int64()), "y": pa.nulls(1), "z": pa.array(["extra"])}
    )
    keys = store_children(store, [ints, floats, nulls])

    merge_sorted(store, keys, "merged.pq")

    merged = read_table(store, "merged.pq")
    assert merged.schema.field("y").type == pa.float64()
    assert merged.column("y").to_pylist() == [1.0, 0.5, 2.0, None]
    assert merged.column("z").to_pylist() == [None, None, None, "extra"]


def test_metadata_of_the_children_is_kept(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    tagged = pa.table({"sort_index": pa.array([0], pa.int64())}).replace_schema_metadata(
        {"scythe.index": "sort_index,hour"}
    )
    keys = store_children(store, [tagged, pa.table({"sort_index": pa.array([1], pa.int64())})])

    merge_sorted(store, keys, "merged.pq")

    assert read_table(store, "merged.pq").schema.metadata == {b"scythe.index": b"sort_index,hour"}


def test_tables_without_a_sort_index_are_appended_in_order(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    keys = store_children(store, [pa.table({"v": [3, 1]}), pa.table({"v": [2]})])

    merge_sorted(store, keys, "merged.pq", budget_rows=1)

    assert read_table(store, "merged.pq").column("v").to_pylist() == [3, 1, 2]


def test_empty_children_give_an_empty_typed_table(store: ArtifactStore) -> None:
    empty = pa.table(
        {"sort_index": pa.array([], pa.int64()), "error_type": pa.array([], pa.string())}
    )
    keys = store_children(store, [empty, empty])

    assert merge_sorted(store, keys, "run/failures.pq") == 0

    merged = read_table(store, "run/failures.pq")
    assert merged.num_rows == 0
    assert merged.schema.field("error_type").type == pa.string()


def test_a_missing_child_fails_and_writes_nothing(store: ArtifactStore) -> None:
    keys = store_children(store, grid_stride_children(10, factor=2))

    with pytest.raises(ArtifactNotFoundError):
        merge_sorted(store, [*keys, "run/output/gone/scalars.pq"], "run/output/scalars.pq")

    assert not store.exists("run/output/scalars.pq")


@pytest.mark.parametrize("budget_rows", [5, 100_000])
def test_a_reshaped_merge_writes_only_the_columns_it_names(
    store: ArtifactStore, budget_rows: int
) -> None:
    """The root merges its children straight into final/'s layout: columns chosen and
    reordered, metadata set, rows still in spec order."""
    keys = store_children(store, grid_stride_children(300, factor=4))
    seen: list[pa.Schema] = []

    def reshape(schema: pa.Schema) -> pa.Schema:
        seen.append(schema)
        return pa.schema([schema.field("label"), schema.field("sort_index")], metadata={b"k": b"v"})

    written = merge_sorted(store, keys, "final/scalars.pq", budget_rows, reshape)

    merged = read_table(store, "final/scalars.pq")
    assert written == merged.num_rows == 300
    assert seen[0].names == ["sort_index", "x", "label"]  # shown the children's whole schema
    assert merged.column_names == ["label", "sort_index"]
    assert merged.schema.metadata == {b"k": b"v"}
    assert merged.column("sort_index").to_pylist() == list(range(300))
    assert merged.column("label").to_pylist() == [f"spec-{k}" for k in range(300)]


def test_a_merge_its_reshape_leaves_out_writes_nothing(store: ArtifactStore) -> None:
    keys = store_children(store, grid_stride_children(50, factor=3))

    assert merge_sorted(store, keys, "final/refs.pq", reshape=lambda schema: None) is None
    assert not store.exists("final/refs.pq")


def test_copy_reorders_columns_and_sets_metadata(store: ArtifactStore) -> None:
    write_table(store, "src.pq", grid_stride_children(500, factor=1)[0])

    with open_parquet(store, "src.pq") as source:
        written = copy_parquet(
            source,
            store,
            "dst.pq",
            columns=["label", "sort_index"],
            metadata={b"k": b"v"},
            batch_rows=64,
        )

    with open_parquet(store, "dst.pq") as parquet:
        assert parquet.metadata.num_row_groups >= 8
    copied = read_table(store, "dst.pq")
    assert written == 500
    assert copied.column_names == ["label", "sort_index"]
    assert copied.schema.metadata == {b"k": b"v"}
    assert copied.column("sort_index").to_pylist() == list(range(500))


@pytest.mark.parametrize("batch_rows", [1, 13, 65_536])
def test_split_matches_the_grid_stride_partition(store: ArtifactStore, batch_rows: int) -> None:
    specs = grid_stride_children(1_000, factor=1)[0]
    write_table(store, "run/specs.pq", specs)
    keys = [f"run/input/{i}/specs.pq" for i in range(7)]

    split_grid_stride(store, "run/specs.pq", keys, factor=7, batch_rows=batch_rows)

    expected = [list(range(i, 1_000, 7)) for i in range(7)]
    for key, rows, size in zip(keys, expected, child_sizes(1_000, 7), strict=True):
        child = read_table(store, key)
        assert child.num_rows == size == count_rows(store, key)
        assert child.column("sort_index").to_pylist() == rows
        assert child.column("label").to_pylist() == [f"spec-{k}" for k in rows]


def test_split_leaves_children_that_have_their_specs_alone(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    write_table(store, "specs.pq", grid_stride_children(10, factor=1)[0])
    write_table(store, "child0.pq", pa.table({"sort_index": pa.array([99], pa.int64())}))

    split_grid_stride(store, "specs.pq", [None, "child1.pq", "child2.pq"], factor=3)

    assert read_table(store, "child0.pq").column("sort_index").to_pylist() == [99]
    assert read_table(store, "child1.pq").column("sort_index").to_pylist() == [1, 4, 7]
    assert read_table(store, "child2.pq").column("sort_index").to_pylist() == [2, 5, 8]


def test_child_sizes_drop_empty_children() -> None:
    assert child_sizes(8, 3) == [3, 3, 2]
    assert child_sizes(2, 10) == [1, 1]


LAYOUT = RunLayout("journal_test", SemVer(1, 0, 0), "2026-01-02_03-04-05")


class JournalIn(ExperimentInputSpec):
    x: int = 0


class JournalOut(ExperimentOutputSpec):
    y: int
    n: int = 0


SCHEMA = ExperimentSchema.build(JournalIn, JournalOut)


def outcome(i: int, seconds: float, ok: bool = True) -> LeafOutcome:
    return LeafOutcome(
        sort_index=i, leaf_id=f"{i:09d}", ok=ok, scalars={"y": i, "n": 0}, wall_time=seconds
    )


def outcomes(*rows: LeafOutcome) -> pa.Table:
    return outcome_table(SCHEMA, rows)


def journal(store: ArtifactStore, *, generation: int = 1, max_seconds: float = 5.0) -> LeafJournal:
    return LeafJournal(store, LAYOUT, "root", SCHEMA, generation, max_seconds=max_seconds)


def settled(journal: LeafJournal) -> list[int]:
    return sorted(journal.settled().column("sort_index").to_pylist())


def written(store: LocalStore) -> list[str]:
    return list(store.list_keys(LAYOUT.key("scatter-gather", "journal", "root") + "/"))


def test_cheap_leaves_stay_in_memory_until_they_add_up(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    leaves = journal(store)
    leaves.record(outcomes(*(outcome(i, 0.001) for i in range(2000))))  # 2 s of work
    assert written(store) == []
    leaves.record(outcomes(*(outcome(i, 1.0) for i in range(2000, 2003))))  # 5 s in all
    assert len(written(store)) == 1
    assert settled(leaves) == list(range(2003))


def test_one_long_leaf_is_written_at_once(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    journal(store).record(outcomes(outcome(7, 60.0)))
    assert settled(journal(store)) == [7]


def test_zero_seconds_writes_every_batch(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    leaves = journal(store, max_seconds=0.0)
    leaves.record(outcomes(outcome(0, 0.0)))
    leaves.record(outcomes(outcome(1, 0.0), outcome(2, 0.0, ok=False)))
    assert len(written(store)) == 2
    assert settled(leaves) == [0, 1, 2]


def test_flush_writes_whatever_is_pending(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    leaves = journal(store)
    leaves.record(outcomes(outcome(0, 0.0), outcome(1, 0.0, ok=False)))
    assert written(store) == []
    leaves.flush()
    leaves.flush()  # nothing left: no empty object
    assert len(written(store)) == 1
    assert settled(leaves) == [0, 1]


def test_latest_row_of_a_leaf_wins_and_old_failures_rerun(tmp_path: Path) -> None:
    """A failure of generation 1 is retried in generation 2; a success is settled for good;
    when a leaf appears twice, the later file decides."""
    store = LocalStore(root=tmp_path)
    first = journal(store, generation=1, max_seconds=0.0)
    first.record(outcomes(outcome(0, 0.0), outcome(1, 0.0, ok=False), outcome(2, 0.0, ok=False)))
    second = journal(store, generation=2, max_seconds=0.0)
    assert settled(second) == [0]
    second.record(outcomes(outcome(2, 0.0)))
    assert settled(second) == [0, 2]
    assert settled(journal(store, generation=1)) == [0, 1, 2]


def test_batches_leaves_wrote_are_counted_from_their_names(tmp_path: Path) -> None:
    """A progress display counts leaf-written batches by name alone: their bodies are never
    read (here they are not even Parquet); other batches are read, one count per leaf."""
    store = LocalStore(root=tmp_path)
    prefix = LAYOUT.journal_prefix("root")
    for generation, ok, failed in ((1, 3, 2), (2, 1, 1), (2, 4, 0)):
        stem = f"g{generation:03d}-{generation:020d}-{ok}{failed}aaaaaa-{LEAF_MARK}-{ok}-{failed}"
        store.put_bytes(f"{prefix}/{stem}.pq", b"not read")
    # successes of every generation, failures of the current one only
    assert settled_counts(store, prefix, 2) == (3 + 1 + 4, 1)
    assert settled_counts(store, prefix, 3) == (8, 0)
    node_written = journal(store, generation=2, max_seconds=0.0)
    node_written.record(outcomes(outcome(10, 0.0), outcome(10, 0.0, ok=False), outcome(11, 0.0)))
    assert settled_counts(store, prefix, 2) == (8 + 1, 1 + 1)  # leaf 10's last row: a failure


@settings(max_examples=60, deadline=None)
@given(
    runs=st.lists(
        st.tuples(
            st.integers(0, 5),  # which batch of the node (8 leaves each)
            st.integers(1, 8),  # its size
            st.lists(st.booleans(), min_size=8, max_size=8),  # each leaf's ok
            st.one_of(st.none(), st.tuples(st.integers(0, 7), st.integers(1, 8))),  # a part
        ),
        min_size=1,
        max_size=12,
    ),
    lost=st.lists(st.integers(0, 47), max_size=3),
)
def test_names_count_what_the_bodies_settle_when_batches_run_again(
    runs: list[tuple[int, int, list[bool], tuple[int, int] | None]], lost: list[int]
) -> None:
    """Leaf-written batches, some written again by a rerun of their task, whole or split
    into parts after it gave out (same leaves, maybe other outcomes), and failures the node
    wrote for leaves whose tasks it gave up on: the counts from names (reading only where
    batches share leaves) equal those of reading every body and keeping each leaf's last
    row, so a progress display never counts a leaf twice."""
    with tempfile.TemporaryDirectory() as root:
        store = LocalStore(root=Path(root))
        prefix = LAYOUT.journal_prefix("root")
        sizes: dict[int, int] = {}
        leaves: set[int] = set()
        for batch, size, oks, part in runs:
            size = sizes.setdefault(batch, size)  # a rerun has the same leaves
            start, stop = (0, size) if part is None else (part[0], min(part[1], size))
            rows = [outcome(8 * batch + i, 0.0, ok=oks[i]) for i in range(start, stop)]
            if rows:
                write_outcomes(store, prefix, 1, outcomes(*rows), by_leaves=True)
                leaves.update(row.sort_index for row in rows)
        given_up = [i for i in lost if i % 8 < sizes.get(i // 8, 0)]
        leaves.update(given_up)
        if given_up:
            journal(store, generation=1, max_seconds=0.0).record(
                outcomes(*(outcome(i, 0.0, ok=False) for i in sorted(set(given_up))))
            )
        for generation in (1, 2):  # in generation 2, the failures of 1 are to run again
            body = journal(store, generation=generation).settled()
            ok = sum(body.column("ok").to_pylist())
            assert settled_counts(store, prefix, generation) == (ok, body.num_rows - ok)
            activity = journal_activity(store, LAYOUT.journals, generation)
            assert (activity.succeeded, activity.failed) == (ok, body.num_rows - ok)
        assert journal(store, generation=1).settled().num_rows == len(leaves)


def test_only_batches_that_share_leaves_are_read(tmp_path: Path) -> None:
    """Batches whose spans of leaves do not meet are counted from their names, unread
    (here their bodies are not Parquet); a batch that ran again in parts is read with its
    parts, and each of its leaves counts once."""
    store = LocalStore(root=tmp_path)
    prefix = LAYOUT.journal_prefix("root")
    for first, last, ok in ((0, 3, 4), (4, 7, 3)):
        stem = f"g001-{first:020d}-aaaaaaaa-{LEAF_MARK}-{ok}-{4 - ok}-{first}-4-{last}"
        store.put_bytes(f"{prefix}/{stem}.pq", b"not read")
    assert settled_counts(store, prefix, 1) == (7, 1)
    write_outcomes(
        store, prefix, 1, outcomes(*(outcome(i, 0.0) for i in range(8, 12))), by_leaves=True
    )
    for part in ((8, 9), (10, 11)):
        rows = [outcome(i, 0.0, ok=i != 11) for i in part]
        write_outcomes(store, prefix, 1, outcomes(*rows), by_leaves=True)
    assert settled_counts(store, prefix, 1) == (7 + 3, 1 + 1)


def every_field_set() -> LeafOutcome:
    return LeafOutcome(
        sort_index=41,
        leaf_id="leaf-41",
        ok=False,
        scalars={"y": 2.5, "n": 3},
        file_refs={"report": "file:///r.csv", "missing": None},
        dataframes={"hourly": "runs/x/df/hourly/41.pq"},
        error_type="ValueError",
        error_message="bad input",
        traceback="Traceback ...",
        attempts=3,
        worker="local-host-123",
        wall_time=0.125,
        peak_rss_mib=97.5,
        finished_at=1_790_000_000.25,
    )


def test_pickle_round_trip_keeps_every_field() -> None:
    outcome = every_field_set()
    restored = pickle.loads(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    assert dataclasses.asdict(restored) == dataclasses.asdict(outcome)
    # distinct values per field, so a reordered __reduce__ could not pass by accident
    values = [repr(v) for v in dataclasses.astuple(outcome)]
    assert len(set(values)) == len(values)


def test_journal_json_round_trip_keeps_every_field() -> None:
    outcome = every_field_set()
    (restored,) = OUTCOMES.validate_json(OUTCOMES.dump_json([outcome]))
    assert restored == outcome


def test_outcome_table_round_trip_keeps_every_field() -> None:
    outcome = dataclasses.replace(every_field_set(), scalars={"y": 2, "n": 3}, file_refs={})
    (restored,) = outcomes_of(SCHEMA, outcome_table(SCHEMA, [outcome]))
    assert dataclasses.asdict(restored) == dataclasses.asdict(
        dataclasses.replace(outcome, leaf_id=restored.leaf_id)
    )
