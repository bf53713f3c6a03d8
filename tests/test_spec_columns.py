"""Specs taken column by column: the same specs, and the same errors, as row by row."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ConfigDict, Field, PrivateAttr, computed_field, field_validator

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    LocalEngine,
    LocalStore,
    SpecValidationError,
)
from scythe_oo.definition.plain import trusted_specs
from scythe_oo.driver.validate import Problems, validate_chunk
from scythe_oo.runfolder.spec_columns import (
    column_fields,
    encode_columns,
    spec_json,
    spec_objects,
    takes_columns,
)
from scythe_oo.runfolder.specs import TAIL_COLUMN, encode_chunk, specs_table


class PlainInput(ExperimentInputSpec):
    x: float
    n: int
    on: bool
    tag: str


class PlainOutput(ExperimentOutputSpec):
    y: float
    size: int


class PlainSweep(Experiment[PlainInput, PlainOutput]):
    name = "tcolumns_plain"
    min_batch_seconds = 0.0

    def run(self, spec: PlainInput, ctx: LeafContext) -> PlainOutput:
        return PlainOutput(y=spec.x * 2 + spec.on, size=spec.n + len(spec.tag))


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(root=tmp_path / "store")


# --------------------------------------------------------------------------------------------
# Which models are plain
# --------------------------------------------------------------------------------------------


class Constrained(ExperimentInputSpec):
    x: float = Field(multiple_of=0.5)


class Lengthy(ExperimentInputSpec):
    tag: str = Field(min_length=1)


class Optional_(ExperimentInputSpec):
    x: float | None


class Literal_(ExperimentInputSpec):
    mode: Literal["a", "b"]


class Validated(ExperimentInputSpec):
    x: float

    @field_validator("x")
    @classmethod
    def _round(cls, value: float) -> float:
        return round(value)


class Computed(ExperimentInputSpec):
    x: float

    @computed_field  # type: ignore[prop-decorator]
    @property
    def twice(self) -> float:
        return 2 * self.x


class Stripped(ExperimentInputSpec):
    model_config = ConfigDict(str_strip_whitespace=True)
    tag: str


class Aliased(ExperimentInputSpec):
    x: float = Field(alias="X")


class Defaulted(ExperimentInputSpec):
    x: float = Field(default=1.0, description="A default changes nothing about a value given.")


@pytest.mark.parametrize(
    "model", [Constrained, Lengthy, Optional_, Literal_, Validated, Computed, Stripped, Aliased]
)
def test_a_model_that_does_more_than_check_types_is_not_plain(model: type[Any]) -> None:
    assert column_fields(model) is None


def test_plain_fields_are_the_declared_ones_in_order() -> None:
    assert [f.name for f in column_fields(PlainInput) or ()] == ["x", "n", "on", "tag"]
    assert [f.name for f in column_fields(Defaulted) or ()] == ["x"]


def test_a_table_is_taken_as_columns_only_with_exactly_the_fields_in_usable_types() -> None:
    schema = PlainSweep.schema
    good = pa.schema(
        [("tag", pa.large_string()), ("x", pa.int32()), ("n", pa.int8()), ("on", pa.bool_())]
    )
    assert takes_columns(schema, good)
    assert not takes_columns(schema, good.remove(0))  # a field missing: its default applies
    assert not takes_columns(schema, good.append(pa.field("extra", pa.int64())))
    assert not takes_columns(schema, good.set(2, pa.field("n", pa.float64())))  # 3.0 for int
    assert not takes_columns(schema, good.set(1, pa.field("x", pa.string())))  # "1.5" is lax


# --------------------------------------------------------------------------------------------
# The same specs as row by row
# --------------------------------------------------------------------------------------------

_FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([-0.0, 5e-324, 1e300])
_ROWS = st.lists(
    st.fixed_dictionaries(
        {
            "x": _FLOATS | st.integers(-(2**60), 2**60) | st.none(),
            "n": st.integers(-(2**63), 2**63 - 1),
            "on": st.booleans(),
            "tag": st.text(st.characters(blacklist_categories=["Cs"]), max_size=12),
        }
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=_ROWS, ints=st.booleans())
def test_columns_encode_exactly_what_rows_encode_or_decline(
    rows: list[dict[str, Any]], ints: bool
) -> None:
    """Where the column path encodes a table, its index columns equal the row path's, and
    both the JSON written from them and the specs built from them are the very specs
    pydantic makes of the rows; it declines only for a value the row path must judge (a
    null, a non-finite float, an integer a float column cannot hold exactly)."""
    schema = PlainSweep.schema
    if ints:  # a float field filled from an integer column
        rows = [{**row, "x": _integer(row["x"])} for row in rows]
    else:
        rows = [{**row, "x": _floating(row["x"])} for row in rows]
    x_type = pa.int64() if ints else pa.float64()
    table = pa.table(
        {
            "x": pa.array([r["x"] for r in rows], x_type, from_pandas=False),
            "n": pa.array([r["n"] for r in rows], pa.int64()),
            "on": pa.array([r["on"] for r in rows], pa.bool_()),
            "tag": pa.array([r["tag"] for r in rows], pa.string()),
        }
    )
    assert takes_columns(schema, table.schema)
    encoded = encode_columns(schema, table)
    xs = [r["x"] for r in rows]
    needs_rows = any(x is None or not _finite(x) or (ints and abs(x) > 2**53) for x in xs)
    assert (encoded is None) == needs_rows
    if encoded is None:
        return
    specs = [PlainInput.model_validate(row) for row in rows]
    by_rows = encode_chunk(schema, specs, [], 0)
    for name in ("x", "n", "on", "tag"):
        got, want = encoded.column(name).to_pylist(), by_rows.column(name).to_pylist()
        assert [_bits(v) for v in got] == [_bits(v) for v in want]
    assert encoded.column(TAIL_COLUMN).null_count == len(rows)  # no JSON: the columns hold it
    stored = specs_table(schema, encoded, 7, "plain/v1.0.0/x", "root-1", {})
    ids = {"experiment_id": "plain/v1.0.0/x", "root_workflow_run_id": "root-1"}
    specs = [s.model_copy(update={**ids, "sort_index": 7 + i}) for i, s in enumerate(specs)]
    from_json = [PlainInput.model_validate_json(text) for text in spec_json(PlainInput, stored)]
    built = spec_objects(schema, stored)
    for made in (from_json, built):
        for got, spec in zip(made, specs, strict=True):
            assert type(got) is PlainInput and _bits(got.x) == _bits(spec.x)
            assert [(k, type(v)) for k, v in got.__dict__.items()] == [
                (k, type(v)) for k, v in spec.__dict__.items()
            ]
            assert got.model_dump(exclude={"x"}) == spec.model_dump(exclude={"x"})
            assert got.model_fields_set == {*ids, "sort_index", "x", "n", "on", "tag"}


def _integer(value: Any) -> int:
    return int(value) if _finite(value) and abs(value) < 2**62 else 2**60 + 1


def _floating(value: Any) -> float | None:
    return float(value) if isinstance(value, int) else value


def _finite(value: Any) -> bool:
    return value is not None and math.isfinite(value)


def _bits(value: Any) -> Any:
    """Floats compared by their text, so that -0.0 differs from 0.0."""
    return repr(value) if isinstance(value, float) else value


class Bounded(ExperimentInputSpec):
    x: float = Field(ge=-1.5, lt=1e6, description="Bounds pydantic checks; so do the columns.")
    n: int = Field(gt=-5, le=1000)


class BoundedSweep(Experiment[Bounded, PlainOutput]):
    name = "tcolumns_bounded"

    def run(self, spec: Bounded, ctx: LeafContext) -> PlainOutput:
        return PlainOutput(y=spec.x, size=spec.n)


@settings(max_examples=100, deadline=None)
@given(
    xs=st.lists(st.floats(-3, 2e6, allow_nan=False), min_size=1, max_size=20),
    ns=st.lists(st.integers(-10, 1010), min_size=20, max_size=20),
)
def test_bounds_are_checked_column_wise_as_pydantic_checks_them(
    xs: list[float], ns: list[int]
) -> None:
    schema = BoundedSweep.schema
    table = pa.table({"x": xs, "n": ns[: len(xs)]})
    assert takes_columns(schema, table.schema)
    rows = table.to_pylist()
    valid = []
    for row in rows:
        with contextlib.suppress(ValueError):
            valid.append(Bounded.model_validate(row))
    encoded = encode_columns(schema, table)
    assert (encoded is None) == (len(valid) < len(rows))
    if encoded is not None:
        assert encoded.column("x").to_pylist() == [spec.x for spec in valid]
        assert encoded.column("n").to_pylist() == [spec.n for spec in valid]


def test_an_out_of_bounds_row_is_named_as_row_by_row(store: LocalStore) -> None:
    frame = pd.DataFrame({"x": [0.0, -2.0, 1.0], "n": [1, 2, 1001]})
    with pytest.raises(SpecValidationError) as info:
        BoundedSweep.allocate(frame, store=store)
    message = str(info.value)
    assert "spec #1: field 'x'" in message and "spec #2: field 'n'" in message
    assert list(store.list_keys("")) == []


# --------------------------------------------------------------------------------------------
# End to end: a DataFrame and a generator give one table
# --------------------------------------------------------------------------------------------


def test_a_frame_of_plain_columns_runs_as_its_generator_would(store: LocalStore) -> None:
    rows = [
        {"x": v, "n": i, "on": i % 2 == 0, "tag": f't{i}\u00e9"'}
        for i, v in enumerate([0.5, -0.0, 1e-300, 3.0, 2.5e17, 7.0])
    ]
    frame = pd.DataFrame(rows)
    assert takes_columns(
        PlainSweep.schema, pa.Table.from_pandas(frame, preserve_index=False).schema
    )
    tables = []
    for source in (frame, (PlainInput(**row) for row in rows), pa.Table.from_pandas(frame)):
        run = PlainSweep.allocate(source, store=store, engine=LocalEngine(max_workers=1))
        scalars = run.wait(timeout=60).results.scalars()
        tables.append(scalars.reset_index(["experiment_id", "root_workflow_run_id"], drop=True))
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])
    assert math.copysign(1.0, tables[0].index.get_level_values("x")[1]) == -1.0


def test_a_frame_with_nan_and_huge_integers_takes_the_row_path_and_keeps_them(
    store: LocalStore,
) -> None:
    """pandas' NaN is a float, and 2**60 a valid one: the column path declines both chunks
    and the row path keeps them as pydantic does."""
    frame = pd.DataFrame(
        {"x": [1.5, math.nan], "n": [1, 2], "on": [True, False], "tag": ["a", "b"]}
    )
    run = PlainSweep.allocate(frame, store=store, engine=LocalEngine(max_workers=1))
    xs = run.wait(timeout=60).results.scalars().index.get_level_values("x")
    assert xs[0] == 1.5 and math.isnan(xs[1])
    huge = pd.DataFrame({"x": [2**60 + 1], "n": [1], "on": [True], "tag": ["a"]})
    run = PlainSweep.allocate(huge, store=store, engine=LocalEngine(max_workers=1))
    assert run.wait(timeout=60).results.scalars().index.get_level_values("x")[0] == float(2**60)


def test_a_bad_column_is_named_per_spec_as_row_by_row(store: LocalStore) -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0], "n": [1, 2], "on": [True, False], "tag": ["a", 7]})
    with pytest.raises(SpecValidationError) as info:
        PlainSweep.allocate(frame, store=store)
    assert "spec #1: field 'tag'" in str(info.value)
    assert list(store.list_keys("")) == []


# --------------------------------------------------------------------------------------------
# Specs of a plain model, passed as objects: taken as they are only when validating would not
# change them
# --------------------------------------------------------------------------------------------

_CHANGES = st.sampled_from([None, ("x", -2.0), ("x", 1), ("x", "0.5"), ("n", "3"), ("n", 2000)])


@settings(max_examples=80, deadline=None)
@given(changes=st.lists(_CHANGES, min_size=1, max_size=8))
def test_specs_changed_after_construction_are_validated_as_copies_would_be(
    changes: list[tuple[str, Any] | None],
) -> None:
    specs = [Bounded(x=0.25 * i, n=i) for i in range(len(changes))]
    for spec, change in zip(specs, changes, strict=True):
        if change is not None:
            object.__setattr__(
                spec, *change
            )  # what `spec.x = ...` does without validate_assignment
    before = [dict(spec.__dict__) for spec in specs]
    problems = Problems(BoundedSweep)
    got = validate_chunk(BoundedSweep, specs, 0, problems)
    expected_problems = Problems(BoundedSweep)
    expected = []
    for position, spec in enumerate(specs):
        try:
            expected.append(Bounded.model_validate(dict(spec.__dict__)))
        except ValueError:
            expected_problems.add(f"spec #{position}")
    assert [dict(spec.__dict__) for spec in specs] == before  # the caller's objects, untouched
    assert problems.count == expected_problems.count
    if not expected_problems:
        assert [(s.x, s.n) for s in got] == [(s.x, s.n) for s in expected]
        assert all(type(s.x) is float and type(s.n) is int for s in got)


# --------------------------------------------------------------------------------------------
# Specs built from specs.pq's columns (what workers run)
# --------------------------------------------------------------------------------------------


def _stored(schema: Any, frame: pd.DataFrame) -> pa.Table:
    """specs.pq's rows for ``frame``, as allocate writes them."""
    encoded = encode_columns(schema, pa.Table.from_pandas(frame, preserve_index=False))
    assert encoded is not None
    return specs_table(schema, encoded, 0, "x/v1.0.0/t", "root", {})


def test_specs_built_from_columns_are_separate_objects_equal_to_validated_ones() -> None:
    frame = pd.DataFrame({"x": [0.5, -0.0, 2.0], "n": [1, 2, 3], "on": [True, False, True]})
    frame["tag"] = ["a", "b\u00e9", '"c"']
    stored = _stored(PlainSweep.schema, frame)
    built = list(spec_objects(PlainSweep.schema, stored))
    validated = [PlainInput.model_validate_json(text) for text in spec_json(PlainInput, stored)]
    assert built == validated
    assert [s.model_dump_json() for s in built] == [s.model_dump_json() for s in validated]
    built[0].x = 9.0  # a leaf that changes its spec changes only its own
    built[0].workflow_run_id = "w"
    assert built[1].x == -0.0 and built[2].workflow_run_id is None
    assert "workflow_run_id" in built[0].model_fields_set
    assert "workflow_run_id" not in built[1].model_fields_set


class Private(ExperimentInputSpec):
    x: float
    _seen: list[float] = PrivateAttr(default_factory=list)


class Extra(ExperimentInputSpec):
    model_config = ConfigDict(extra="allow")
    x: float


class Factory(ExperimentInputSpec):
    x: float
    y: float = Field(default_factory=lambda: 1.5)


class Keeps(ExperimentOutputSpec):
    y: float


class PrivateSweep(Experiment[Private, Keeps]):
    name = "tcolumns_private"

    def run(self, spec: Private, ctx: LeafContext) -> Keeps:
        spec._seen.append(spec.x)
        return Keeps(y=len(spec._seen) + spec.x)


@pytest.mark.parametrize("model", [Private, Extra, Factory])
def test_a_model_with_more_than_its_fields_gets_specs_validated_from_json(
    model: type[Any],
) -> None:
    """Private attributes, kept extras and default factories are pydantic's to set up: such
    a model's specs are validated from their JSON, which the columns still give."""
    columns: dict[str, list[Any]] = {"sort_index": [0, 1], "x": [1.0, 2.0]}
    assert trusted_specs(model, columns) is None


def test_a_private_attribute_is_set_up_for_each_spec_of_a_frame(store: LocalStore) -> None:
    run = PrivateSweep.allocate(
        pd.DataFrame({"x": [1.0, 2.0, 3.0]}), store=store, engine=LocalEngine(max_workers=1)
    )
    scalars = run.wait(timeout=60).results.scalars()
    assert list(scalars["y"]) == [2.0, 3.0, 4.0]  # each spec's own, empty list


def test_a_leaf_of_a_frame_replays_from_its_columns(store: LocalStore, tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": [0.25, 4.0], "n": [3, 4], "on": [False, True], "tag": ["p", "q"]})
    run = PlainSweep.allocate(frame, store=store, engine=LocalEngine(max_workers=1))
    run.wait(timeout=60)
    stored = pd.read_parquet(store.root / run.layout.specs)
    assert stored["__spec__"].isna().all()  # the columns are the specs
    again = run.replay(1, scratch=tmp_path / "scratch")
    assert again.ok and again.scalars == {"y": 9.0, "size": 5}


def test_plain_specs_from_a_generator_keep_json_only_where_a_float_is_not_finite() -> None:
    """The row path drops the JSON as the column path does, except for a chunk holding inf
    or NaN, which only JSON keeps as pydantic reads it; a batch across both kinds of chunk
    is made of the same specs either way."""
    schema = PlainSweep.schema
    finite = [PlainInput(x=0.5 * i, n=i, on=True, tag="t") for i in range(3)]
    odd = [
        PlainInput(x=math.inf, n=3, on=False, tag="u"),
        PlainInput(x=math.nan, n=4, on=False, tag="v"),
    ]
    plain = encode_chunk(schema, finite, [], 0)
    kept = encode_chunk(schema, odd, [], 3)
    assert plain.column(TAIL_COLUMN).null_count == 3 and kept.column(TAIL_COLUMN).null_count == 0
    stored = pa.concat_tables(
        [
            specs_table(schema, plain, 0, "x/v1.0.0/t", "root", {}),
            specs_table(schema, kept, 3, "x/v1.0.0/t", "root", {}),
        ]
    )
    texts = [PlainInput.model_validate_json(text) for text in spec_json(PlainInput, stored)]
    assert [(t.n, math.isnan(t.x) or t.x) for t in texts] == [
        (0, 0.0),
        (1, 0.5),
        (2, 1.0),
        (3, math.inf),
        (4, True),
    ]
    for window in (stored, stored.slice(2, 2), stored.slice(0, 3), stored.slice(3, 2)):
        made = list(spec_objects(schema, window))
        first = window.column("sort_index")[0].as_py()
        want = (finite + odd)[first : first + window.num_rows]
        assert len(made) == window.num_rows
        for got, spec in zip(made, want, strict=True):
            assert _bits(got.x) == _bits(spec.x) and (got.n, got.tag) == (spec.n, spec.tag)
            assert got.sort_index == spec.n and got.experiment_id == "x/v1.0.0/t"
