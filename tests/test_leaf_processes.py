"""A Hatchet worker's leaf processes, without the engine: whose batch a dead process blames.

A worker hands each leaf task's batch to one process of its pool. When one process dies, the
pool breaks and every batch in flight breaks with it, including those running beside the
dead one. Only the batch whose process died may fail its task; the others run again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from scythe_oo import LocalStore
from scythe_oo.engines.hatchet.leaf_processes import (
    BatchResult,
    LeafBatch,
    LeafProcessDied,
    run_leaves,
    start_leaf_processes,
    stop_leaf_processes,
)
from tests.support.counting import CountedInput, Crashy
from tests.support.counting import executions as counted

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def two_processes() -> Iterator[None]:
    start_leaf_processes(2, 60.0)
    try:
        yield
    finally:
        stop_leaf_processes()


def one_spec_batch(store: LocalStore, counter: Path, i: int, seconds: float) -> LeafBatch:
    spec = CountedInput(
        i=i,
        counter_dir=str(counter),
        seconds=seconds,
        experiment_id="crashy/v1.0.0/2026-12-01_05-29-59",
        sort_index=i,
    )
    return LeafBatch(
        experiment=Crashy.name,
        experiment_id="crashy/v1.0.0/2026-12-01_05-29-59",
        store=store.describe(),
        node="root",
        generation=1,
        journal=False,
        specs_json=f"[{spec.model_dump_json()}]",
        retries=0,
        worker_name="test",
        first_attempt=1,
        timeout_seconds=60.0,
    )


def test_only_the_batch_whose_process_died_fails(two_processes: None, tmp_path: Path) -> None:
    """Spec 5 segfaults its process while spec 6 runs in the other one: spec 6's batch
    breaks with the pool, runs again, and succeeds; only spec 5's batch fails."""
    store = LocalStore(tmp_path / "store")
    counter = tmp_path / "count"
    counter.mkdir()
    slow = one_spec_batch(store, counter, 6, seconds=3.0)
    crash = one_spec_batch(store, counter, 5, seconds=0.3)

    async def both() -> list[BatchResult | BaseException]:
        return await asyncio.gather(run_leaves(slow), run_leaves(crash), return_exceptions=True)

    survived, died = asyncio.run(both())
    assert isinstance(died, LeafProcessDied), died
    assert "SIGSEGV" in str(died)
    assert isinstance(survived, BatchResult), survived
    assert survived.table is not None
    assert survived.table.column("ok").to_pylist() == [True]
    assert survived.table.column("sort_index").to_pylist() == [6]
    # Spec 6 was in flight when spec 5's process died: running in the other process (it
    # then ran again in the fresh pool), or, on a slow machine, still queued behind it; the
    # pool fails both kinds with it, and neither may fail its task.
    runs = counted(counter)
    assert runs[5] == 1 and runs[6] in (1, 2), runs


def test_a_batch_that_kills_its_process_every_time_fails_every_time(
    two_processes: None, tmp_path: Path
) -> None:
    """Running again is for bystanders only: the crashing batch itself is never rerun here
    (its task's retries are Hatchet's to spend), and the pool serves the next batch."""
    store = LocalStore(tmp_path / "store")
    counter = tmp_path / "count"
    counter.mkdir()
    for _ in range(2):
        with pytest.raises(LeafProcessDied, match="SIGSEGV"):
            asyncio.run(run_leaves(one_spec_batch(store, counter, 5, seconds=0.0)))
    after = asyncio.run(run_leaves(one_spec_batch(store, counter, 7, seconds=0.0)))
    assert after.table is not None and after.table.column("ok").to_pylist() == [True]
    assert counted(counter) == {5: 2, 7: 1}
