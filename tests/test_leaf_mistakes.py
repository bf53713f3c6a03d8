"""One leaf's mistake is that leaf's failure row, never the run's death (issue 12, parts 1, 3
and 4): whatever a leaf returns or raises, the run ends, every spec is accounted for once,
values round-trip exactly (inf and NaN included, through the journal and retry_failed), and a
leaf that overstays its timeout fails even when it dodges the interruption."""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import time
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    LocalEngine,
    LocalStore,
    Timeouts,
)
from scythe_oo.leaf.deadline import Deadline, LeafTimeoutError, disarm
from tests.support.invariants import account_for_everything

pytestmark = pytest.mark.timeout(300)

Behaviour = Literal[
    "ok",
    "raise",
    "exit",
    "interrupt",
    "float_table",
    "int_table",
    "str_table",
    "null_table",
    "clashing_table",
    "long_table_name",
    "duplicate_columns",
    "unstorable_table",
]


class MistakeInput(ExperimentInputSpec):
    behaviour: Behaviour
    value: float = 0.0


class MistakeOutput(ExperimentOutputSpec):
    echoed: float


class Mistakes(Experiment[MistakeInput, MistakeOutput]):
    """Each behaviour is something a leaf may do; only some of them are mistakes."""

    name = "leaf_mistakes"
    min_batch_seconds = 0.0

    def run(self, spec: MistakeInput, ctx: LeafContext) -> MistakeOutput:
        kind = spec.behaviour
        if kind == "raise":
            raise ValueError(f"spec {spec.sort_index} raises")
        if kind == "exit":
            sys.exit(3)
        if kind == "interrupt":
            raise KeyboardInterrupt
        tables: dict[str, pd.DataFrame] = {}
        if kind == "float_table":
            tables["t"] = pd.DataFrame({"x": [0.5, spec.value]})
        elif kind == "int_table":
            tables["t"] = pd.DataFrame({"x": [1, 2]})
        elif kind == "str_table":
            tables["t"] = pd.DataFrame({"x": ["a", "b"]})
        elif kind == "null_table":
            tables["t"] = pd.DataFrame({"x": [None, None]})
        elif kind == "clashing_table":
            tables["t"] = pd.DataFrame({"behaviour": [1.0]})
        elif kind == "long_table_name":
            tables["a_" * 40] = pd.DataFrame({"x": [1.0]})
        elif kind == "duplicate_columns":
            tables["t"] = pd.DataFrame({"x": [1.0]}, index=pd.Index([0], name="x"))
        elif kind == "unstorable_table":
            tables["t"] = pd.DataFrame({"x": [1.0, "mixed"]})
        return MistakeOutput(echoed=spec.value, dataframes=tables)


FAILS_ALONE = {
    "raise": "ValueError",
    "exit": "SystemExit",
    "interrupt": "KeyboardInterrupt",
    "clashing_table": "OutputValidationError",
    "long_table_name": "OutputValidationError",
    "duplicate_columns": "OutputValidationError",
    "unstorable_table": "OutputValidationError",
}
TABLE_TYPES = {"float_table": "number", "int_table": "number", "str_table": "string"}

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([math.inf, -math.inf, math.nan, 0.0, -0.0, 1e308]),
)
leaves = st.lists(
    st.tuples(st.sampled_from(list(Behaviour.__args__)), values),  # type: ignore[attr-defined]
    min_size=1,
    max_size=10,
)


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(leaves=leaves)
def test_no_leaf_sinks_the_run(
    leaves: list[tuple[str, float]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("store"))
    specs = [MistakeInput(behaviour=kind, value=value) for kind, value in leaves]  # type: ignore[arg-type]
    engine = LocalEngine(max_workers=2)
    run = Mistakes.allocate(specs, store=store, engine=engine).wait(timeout=120)

    assert run.status in ("completed", "completed_with_failures")
    account_for_everything(run, len(specs))
    failures = run.failures()
    failed = dict(
        zip(failures.index.get_level_values("sort_index"), failures["error_type"], strict=True)
    )
    messages = dict(
        zip(failures.index.get_level_values("sort_index"), failures["error_message"], strict=True)
    )
    kinds = {*[kind for kind, _ in leaves]}
    typed = [i for i, (kind, _) in enumerate(leaves) if kind in TABLE_TYPES]
    for i, (kind, _) in enumerate(leaves):
        if kind in FAILS_ALONE:
            assert failed.get(i) == FAILS_ALONE[kind], (i, kind, messages.get(i))
        if kind in FAILS_ALONE and FAILS_ALONE[kind] == "OutputValidationError":
            assert f"spec #{i}" in messages[i]
    # The first leaf to return column x fixed its type; a leaf of the other kind failed,
    # naming the column; everyone else's rows are in final/t.pq.
    families = {TABLE_TYPES[leaves[i][0]] for i in typed}
    type_failures = [i for i in typed if i in failed]
    if len(families) <= 1:
        assert type_failures == []
    else:
        assert type_failures, "mixed column types must fail some leaf"
        for i in type_failures:
            assert failed[i] == "OutputValidationError" and "column 'x'" in messages[i]
        losers = {TABLE_TYPES[leaves[i][0]] for i in type_failures}
        assert len(losers) == 1  # one family lost, the one that came second
    if any(kind in TABLE_TYPES or kind == "null_table" for kind in kinds) and "t" in (
        run.results.list()
    ):
        table = run.results.dataframe("t")
        kept = set(table.index.get_level_values("sort_index"))
        expected = {
            i
            for i, (kind, _) in enumerate(leaves)
            if kind in (*TABLE_TYPES, "null_table") and i not in failed
        }
        assert kept == expected

    # Values come back exactly, also after retry_failed, which takes successes from the
    # journal rather than from the leaves.
    def check(scalars: pd.DataFrame) -> None:
        indexes = scalars.index.get_level_values("sort_index")
        for index, got in zip(indexes, scalars["echoed"], strict=True):
            assert same(got, leaves[index][1]), (index, got, leaves[index][1])

    check(run.results.scalars())
    if failed:
        retried = run.retry_failed(engine=engine).wait(timeout=120)
        account_for_everything(retried, len(specs))
        check(retried.results.scalars())


# --------------------------------------------------------------------------------------------
# Deadlines hold without the leaf's cooperation (part 4)
# --------------------------------------------------------------------------------------------


class StubbornInput(ExperimentInputSpec):
    i: int
    how: Literal["blocks", "ignores", "swallows", "fine"] = "fine"


class StubbornOutput(ExperimentOutputSpec):
    done: int


class Stubborn(Experiment[StubbornInput, StubbornOutput]):
    """Dodges the in-process timeout in each of the ways a leaf can."""

    name = "leaf_stubborn"
    timeouts = Timeouts(execution="1s")
    min_batch_seconds = 0.0

    def run(self, spec: StubbornInput, ctx: LeafContext) -> StubbornOutput:
        if spec.how == "blocks":
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(60)
        elif spec.how == "ignores":
            signal.signal(signal.SIGALRM, signal.SIG_IGN)
            time.sleep(60)
        elif spec.how == "swallows":
            with contextlib.suppress(LeafTimeoutError):
                time.sleep(60)
            time.sleep(0.2)  # ... and carries on, past its deadline
        return StubbornOutput(done=spec.i)


@pytest.mark.parametrize("how", ["blocks", "ignores", "swallows"])
def test_a_leaf_that_dodges_its_timeout_still_fails_on_time(tmp_path: Path, how: str) -> None:
    specs = [StubbornInput(i=i, how=how if i == 2 else "fine") for i in range(6)]
    started = time.monotonic()
    run = Stubborn.allocate(
        specs, store=LocalStore(tmp_path), engine=LocalEngine(max_workers=2)
    ).wait(timeout=120)
    elapsed = time.monotonic() - started
    assert elapsed < 45  # the leaf wanted 60 s; its worker was stopped long before
    account_for_everything(run, 6)
    failures = run.failures()
    assert failures.index.get_level_values("sort_index").tolist() == [2]
    assert failures["error_type"].tolist() == ["LeafTimeoutError"]
    assert "timeout of 1s" in failures["error_message"].iloc[0]
    assert run.results.scalars()["done"].tolist() == [0, 1, 3, 4, 5]


@pytest.mark.timeout(120, method="thread")  # the deadline below owns SIGALRM meanwhile
def test_one_deadline_serves_a_batch_of_leaves_one_after_another() -> None:
    """A batch enters one Deadline per leaf (made once, for speed): an overrunning leaf is
    interrupted at its own deadline, and the leaves around it neither inherit that deadline
    nor are cut short by the timer it left armed."""
    previous = signal.getsignal(signal.SIGALRM)
    deadline = Deadline(1.0)  # wide margins: a busy machine may stall this process a while
    outcomes = []
    try:
        for sort_index, spin in enumerate([0.0, 5.0, 0.0, 0.2]):
            deadline.sort_index = sort_index
            started = time.monotonic()
            try:
                with deadline:
                    while time.monotonic() - started < spin:
                        pass
                deadline.check()
                outcomes.append("ok")
            except LeafTimeoutError:
                outcomes.append(f"timeout after {time.monotonic() - started:.1f}s")
    finally:
        disarm()
        signal.signal(signal.SIGALRM, previous)
    assert outcomes[0] == "ok" and outcomes[2:] == ["ok", "ok"], outcomes
    assert outcomes[1].startswith("timeout") and outcomes[1] != "timeout after 5.0s", outcomes
