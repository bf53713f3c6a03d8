"""The invariant every end-to-end test checks: nothing is lost, nothing is counted twice."""

from __future__ import annotations

from scythe_oo import ExperimentRun


def account_for_everything(run: ExperimentRun, n: int) -> None:
    """scalars.pq and failures.pq together hold every spec exactly once, and the manifest
    counts agree with them."""
    ok = list(run.results.scalars().index.get_level_values("sort_index"))
    failed = list(run.failures().index.get_level_values("sort_index"))
    assert sorted(ok + failed) == list(range(n))
    counts = run.manifest().counts
    assert (counts.succeeded, counts.failed, counts.total) == (len(ok), len(failed), n)
