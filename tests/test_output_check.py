"""A leaf's output is recorded exactly as revalidating it would record it, checked or not.

Outputs of plain models whose values all still have their field's own type are taken as they
are (revalidating them would change nothing); anything else is revalidated. These tests hold
the cheap check to the full one: whatever ``run`` returns or changes, the row is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, ValidationError

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    LocalStore,
)
from scythe_oo.leaf.execute import RunContext, run_batch
from scythe_oo.leaf.outcome_table import outcomes_of

RUN_ID = "tcheck_plain/v1.0.0/2026-12-01_00-00-00"


class CheckInput(ExperimentInputSpec):
    how: Literal["mutate", "construct", "reuse", "frames"] = "mutate"


class PlainOut(ExperimentOutputSpec):
    y: float
    n: int = Field(ge=-(2**61), description="A bound, checked with or without revalidation.")
    tag: str


class Checked(Experiment[CheckInput, PlainOut]):
    """Returns an output whose values are ``VALUES[sort_index]``, set as ``how`` says."""

    name = "tcheck_plain"
    VALUES: ClassVar[dict[int, dict[str, Any]]] = {}

    def setup(self) -> None:
        self.kept = PlainOut(y=0.0, n=0, tag="")

    def run(self, spec: CheckInput, ctx: LeafContext) -> PlainOut:
        values = self.VALUES[spec.sort_index]
        if spec.how == "construct":
            return PlainOut.model_construct(**values)
        out = self.kept if spec.how == "reuse" else PlainOut(y=0.0, n=0, tag="")
        for name, value in values.items():
            setattr(out, name, value)  # no validate_assignment: nothing checks this here
        return out


class FreeOut(ExperimentOutputSpec):
    """PlainOut without its bound: the check then compares types only."""

    y: float
    n: int
    tag: str


class CheckedFree(Experiment[CheckInput, FreeOut]):
    """``Checked`` for the output without bounds."""

    name = "tcheck_free"
    VALUES: ClassVar[dict[int, dict[str, Any]]] = {}

    def run(self, spec: CheckInput, ctx: LeafContext) -> FreeOut:
        values = self.VALUES[spec.sort_index]
        if spec.how == "construct":
            return FreeOut.model_construct(**values)
        out = FreeOut(y=0.0, n=0, tag="")
        for name, value in values.items():
            setattr(out, name, value)
        return out


def _run(
    specs: list[CheckInput], tmp_path: Path, cls: type[Checked] | type[CheckedFree] = Checked
) -> list[Any]:
    run = RunContext(experiment_id=RUN_ID, store=LocalStore(root=tmp_path / "store"))
    table = run_batch(cls, specs, run, retries=0, worker_name="test")
    return outcomes_of(cls.schema, table)


values = st.fixed_dictionaries(
    {
        "y": st.floats(allow_nan=False) | st.integers(-5, 5) | st.sampled_from(["1.5", "x", None]),
        "n": st.integers(-(2**62), 2**62) | st.sampled_from([True, 2.0, 2.5, "7", None]),
        "tag": st.text(max_size=5) | st.sampled_from([3, None, b"b"]),
    }
)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.lists(values, min_size=1, max_size=6),
    how=st.sampled_from(["mutate", "construct", "reuse"]),
)
@pytest.mark.parametrize("cls", [Checked, CheckedFree])
def test_each_row_is_what_revalidation_makes_of_the_output(
    cls: type[Checked] | type[CheckedFree],
    rows: list[dict[str, Any]],
    how: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    cls.VALUES = dict(enumerate(rows))
    specs = [CheckInput(how=how, sort_index=i) for i in range(len(rows))]  # type: ignore[arg-type]
    outcomes = _run(specs, tmp_path_factory.mktemp("check"), cls)
    for row, outcome in zip(rows, outcomes, strict=True):
        try:
            expected = cls.schema.output_type.model_validate(row)
        except ValidationError:
            assert not outcome.ok and outcome.error_type == "OutputValidationError"
            continue
        assert outcome.ok, outcome.error_message
        assert outcome.scalars == {"y": expected.y, "n": expected.n, "tag": expected.tag}
        assert [type(outcome.scalars[k]) for k in ("y", "n", "tag")] == [float, int, str]


def test_an_output_reused_across_leaves_records_each_leafs_values(tmp_path: Path) -> None:
    Checked.VALUES = {i: {"y": float(i), "n": i, "tag": f"t{i}"} for i in range(5)}
    specs = [CheckInput(how="reuse", sort_index=i) for i in range(5)]
    outcomes = _run(specs, tmp_path)
    assert [o.scalars for o in outcomes] == [
        {"y": float(i), "n": i, "tag": f"t{i}"} for i in range(5)
    ]


def test_tables_set_after_construction_are_checked(tmp_path: Path) -> None:
    Checked.VALUES = {
        0: {"y": 1.0, "n": 1, "tag": "a", "dataframes": {"t": "not a table"}},
        1: {"y": 1.0, "n": 1, "tag": "a", "dataframes": {"t": pd.DataFrame({"v": [1.0]})}},
    }
    specs = [CheckInput(sort_index=i) for i in range(2)]
    first, second = _run(specs, tmp_path)
    assert not first.ok and first.error_type == "OutputValidationError"
    assert "dataframes" in (first.error_message or "")
    assert second.ok and list(second.dataframes) == ["t"]
