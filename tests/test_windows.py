"""A base node that runs its specs a window at a time streams each table into its final file.

Windows are made tiny here (WINDOW_ROWS = 7), so a 40-spec run has six windows, and every
table that crosses windows is checked against the same run done as one window.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scythe_oo import (
    ArtifactStore,
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    ExperimentRun,
    LeafContext,
    LocalEngine,
    LocalStore,
    ResultCollector,
    RunFailedError,
)
from scythe_oo.tree import base_node
from tests.support.invariants import account_for_everything

pytestmark = pytest.mark.timeout(120)


class StepInput(ExperimentInputSpec):
    i: int


class StepOutput(ExperimentOutputSpec):
    half: float


class Steps(Experiment[StepInput, StepOutput]):
    """A scalar, a failure every 5th spec, and a user table whose ``level`` column is int in
    the first windows and float from spec 20 on (so its schema changes between windows)."""

    name = "test_window_steps"
    min_batch_seconds = 0.0

    def run(self, spec: StepInput, ctx: LeafContext) -> StepOutput:
        if spec.i % 5 == 4:
            raise ValueError(f"spec {spec.i} fails on purpose")
        level: list[int] | list[float] = [spec.i, spec.i + 1] if spec.i < 20 else [0.5, 1.5]
        frame = pd.DataFrame({"t": [0, 1], "level": level}).set_index("t")
        return StepOutput(half=spec.i / 2, dataframes={"curve": frame})


def _run(store: ArtifactStore, window: int, monkeypatch: pytest.MonkeyPatch) -> ExperimentRun:
    monkeypatch.setattr(base_node, "WINDOW_ROWS", window)
    specs = [StepInput(i=i) for i in range(40)]
    run = Steps.allocate(specs, store=store, engine=LocalEngine(max_workers=2)).wait(timeout=60)
    assert run.status == "completed_with_failures"
    account_for_everything(run, 40)
    return run


def _tables(run: ExperimentRun) -> dict[str, pd.DataFrame]:
    return {
        "scalars": run.results.scalars(),
        "failures": run.failures()[["error_type", "error_message"]],
        "curve": run.results.dataframe("curve"),
    }


def _without_ids(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.reset_index(["experiment_id", "root_workflow_run_id"], drop=True)


def _staged(root: Path) -> list[Path]:
    """Staged files, which must not outlive their node."""
    return [p for p in root.rglob("*.tmp")]


@pytest.mark.parametrize("read_ahead", [True, False], ids=["read-ahead", "one-at-a-time"])
def test_windows_give_the_tables_of_one_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_ahead: bool
) -> None:
    """Whether the next window is read while one runs (small windows) or when its turn comes
    (windows of large specs), the tables are those of one window."""
    if not read_ahead:
        monkeypatch.setattr(base_node, "READ_AHEAD_BYTES", 0)
    stores = LocalStore(root=tmp_path / "one"), LocalStore(root=tmp_path / "many")
    one = _run(stores[0], 1_000, monkeypatch)
    many = _run(stores[1], 7, monkeypatch)
    expected, got = _tables(one), _tables(many)
    for name in expected:  # the run's own ids differ; everything else must not
        pd.testing.assert_frame_equal(_without_ids(got[name]), _without_ids(expected[name]))
    for name in ("scalars", "failures", "leaf_stats", "curve"):
        theirs = pq.read_schema(stores[0].path_of(one.layout.final(name)))
        ours = pq.read_schema(stores[1].path_of(many.layout.final(name)))
        assert ours.names == theirs.names and ours.types == theirs.types, name
    curve = got["curve"]
    assert curve["level"].dtype == "float64"  # int in early windows, promoted by the merge
    assert len(curve) == 2 * 32
    assert _staged(tmp_path / "many") == []
    # Only the table whose schema changed went through parts (one per window from its change).
    parts = stores[1].path_of(many.layout.node_output_prefix("root")) / "parts"
    assert {p.name for p in parts.rglob("*.pq")} == {"df.curve.pq"}


def test_windows_stream_to_s3(
    s3_store: ArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = _run(s3_store, 7, monkeypatch)
    scalars = run.results.scalars()
    assert scalars["half"].tolist() == [i / 2 for i in range(40) if i % 5 != 4]
    assert len(run.failures()) == 8
    assert len(run.results.dataframe("curve")) == 2 * 32


@attrs.frozen(kw_only=True)
class BreaksOnWindow(ResultCollector):
    """Fails while building the tables of the window that holds spec ``at``."""

    at: int = 15

    def leaf_table(self, name: str, table: pa.Table) -> pa.Table:
        if name == "scalars" and self.at in table.column("sort_index").to_pylist():
            raise RuntimeError("the collector breaks on this window")
        return table


def test_a_window_that_breaks_leaves_no_table_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(base_node, "WINDOW_ROWS", 7)
    store = LocalStore(root=tmp_path / "store")
    specs = [StepInput(i=i) for i in range(40)]
    run = Steps.allocate(
        specs, store=store, engine=LocalEngine(max_workers=2), collector=BreaksOnWindow()
    )
    with pytest.raises(RunFailedError, match="the collector breaks on this window"):
        run.wait(timeout=60)
    assert run.status == "failed"
    final = store.root / run.layout.final_prefix
    assert not final.exists() or list(final.iterdir()) == []
    assert _staged(tmp_path) == []
