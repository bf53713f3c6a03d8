"""LeafJournal: when finished leaves are written, and what a restarted node reads back."""

from __future__ import annotations

from pathlib import Path

from scythe_oo import LocalStore
from scythe_oo.journal import LeafJournal
from scythe_oo.layout import RunLayout, SemVer
from scythe_oo.outcome import LeafOutcome

LAYOUT = RunLayout("journal_test", SemVer(1, 0, 0), "2026-01-02_03-04-05")


def outcome(i: int, seconds: float, ok: bool = True) -> LeafOutcome:
    return LeafOutcome(sort_index=i, leaf_id=f"{i:09d}", ok=ok, scalars={"y": i}, wall_time=seconds)


def written(store: LocalStore) -> list[str]:
    return list(store.list_keys(LAYOUT.key("scatter-gather", "journal", "root") + "/"))


def test_cheap_leaves_stay_in_memory_until_they_add_up(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    journal = LeafJournal(store, LAYOUT, "root", max_seconds=5.0)
    journal.record([outcome(i, 0.001) for i in range(2000)])  # 2 s of work
    assert written(store) == []
    journal.record([outcome(i, 1.0) for i in range(2000, 2003)])  # 5 s in all
    assert len(written(store)) == 1
    assert set(journal.settled()) == set(range(2003))


def test_one_long_leaf_is_written_at_once(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    journal = LeafJournal(store, LAYOUT, "root", max_seconds=5.0)
    journal.record([outcome(7, 60.0)])
    assert set(LeafJournal(store, LAYOUT, "root").settled()) == {7}


def test_zero_seconds_writes_every_batch(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    journal = LeafJournal(store, LAYOUT, "root", max_seconds=0.0)
    journal.record([outcome(0, 0.0)])
    journal.record([outcome(1, 0.0), outcome(2, 0.0, ok=False)])
    assert len(written(store)) == 2
    assert sorted(journal.settled()) == [0, 1, 2]


def test_flush_writes_whatever_is_pending(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path)
    journal = LeafJournal(store, LAYOUT, "root", max_seconds=5.0)
    journal.record([outcome(0, 0.0), outcome(1, 0.0, ok=False)])
    assert written(store) == []
    journal.flush()
    journal.flush()  # nothing left: no empty object
    assert len(written(store)) == 1
    assert sorted(journal.settled()) == [0, 1]
