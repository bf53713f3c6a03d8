"""Design of experiments: ``MyInput.sample`` draws validated specs from the bounds, categories
and choices the schema declares, reproducibly from the seed, a chunk at a time when asked;
``allocate`` records the design; specs files round-trip it."""

from __future__ import annotations

import datetime as dt
import enum
import gc
import itertools
import math
import warnings
import weakref
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import Field, create_model, model_validator

from scythe_oo import (
    Design,
    DesignError,
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    FileReference,
    LeafContext,
    LocalEngine,
    LocalStore,
    NotIndexed,
    SpecValidationError,
)
from scythe_oo.definition.space import Dimension, DimensionKind
from scythe_oo.driver.sample_file import read_sample_file, write_sample_file
from scythe_oo.driver.sources import ColumnChunk, spec_chunks

pytestmark = [
    pytest.mark.usefixtures("isolated_registry"),
    pytest.mark.filterwarnings("ignore:.*Sobol' points are balanced:UserWarning"),
]

# Examples vary in size; a loaded 2-core machine must not turn slowness into failures.
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAMPLED = ("lhs", "sobol", "halton", "random")


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"
    BLUE = "blue"


class Building(ExperimentInputSpec):
    r_value: float = Field(ge=0.5, le=15, description="Wall R-value [m2K/W]")
    ach: float = Field(gt=0, lt=3, description="Infiltration [1/h]")
    lpd: float = Field(ge=0.1, le=20, json_schema_extra={"scale": "log"})
    floors: int = Field(ge=1, le=12)
    economizer: Literal["none", "drybulb", "enthalpy"]
    color: Color
    heat_pump: bool
    weather: FileReference
    notes: str = "baseline"


WEATHER = [Path("weather/boston.csv"), Path("weather/phoenix.csv")]


def numeric_model(
    low: float, high: float, low_open: bool, high_open: bool, log: bool, integer: bool
) -> type[ExperimentInputSpec]:
    bounds = {("gt" if low_open else "ge"): low, ("lt" if high_open else "le"): high}
    extra = {"scale": "log"} if log else None
    field = Field(json_schema_extra=extra, **bounds)
    model: type[ExperimentInputSpec] = create_model(
        "Numeric", __base__=ExperimentInputSpec, x=(int if integer else float, field)
    )
    return model


bounds_strategy = st.tuples(
    st.floats(-1e6, 1e6, allow_nan=False, allow_subnormal=False),
    st.floats(1e-3, 1e6, allow_nan=False),
    st.booleans(),
    st.booleans(),
)


@PROPERTY
@given(
    bounds=bounds_strategy,
    log=st.booleans(),
    method=st.sampled_from(SAMPLED),
    n=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
)
def test_reals_stay_inside_their_bounds_and_exclusive_bounds_are_never_drawn(
    bounds: tuple[float, float, bool, bool], log: bool, method: str, n: int, seed: int
) -> None:
    low, width, low_open, high_open = bounds
    if log:
        low = abs(low) + 1e-3
    high = low + width
    assume(high > low)
    model = numeric_model(low, high, low_open, high_open, log, integer=False)
    values = [s.x for s in model.sample(n, method, seed=seed)]
    assert len(values) == n
    assert all(isinstance(v, float) for v in values)
    assert all(low <= v <= high for v in values)
    if low_open:
        assert all(v > low for v in values)
    if high_open:
        assert all(v < high for v in values)


def test_a_point_on_an_exclusive_bound_is_moved_inside() -> None:
    """The unit points 0 and (just below) 1 map onto the bounds; exclusive ones must move."""
    dim = Dimension(
        name="x", kind=DimensionKind.REAL, low=0.0, high=1.0, low_open=True, high_open=True
    )
    values = dim.from_unit(np.array([0.0, 0.5, np.nextafter(1.0, 0.0)]))
    assert 0.0 < values[0] < 1e-300 and values[1] == 0.5 and values[2] < 1.0
    closed = Dimension(name="x", kind=DimensionKind.REAL, low=0.0, high=1.0)
    assert closed.from_unit(np.array([0.0]))[0] == 0.0


@PROPERTY
@given(
    low=st.integers(-50, 50),
    span=st.integers(0, 20),
    low_open=st.booleans(),
    high_open=st.booleans(),
    per_value=st.integers(1, 5),
    seed=st.integers(0, 10_000),
)
def test_integers_are_drawn_as_integers_and_lhs_draws_each_equally_often(
    low: int, span: int, low_open: bool, high_open: bool, per_value: int, seed: int
) -> None:
    high = low + span + int(low_open) + int(high_open)
    first, last = low + int(low_open), high - int(high_open)
    model = numeric_model(low, high, low_open, high_open, log=False, integer=True)
    count = last - first + 1
    values = [s.x for s in model.sample(count * per_value, "lhs", seed=seed)]
    assert all(type(v) is int and first <= v <= last for v in values)
    # a Latin hypercube has one point per 1/n stratum, and each integer owns per_value strata
    assert pd.Series(values).value_counts().to_dict() == dict.fromkeys(
        range(first, last + 1), per_value
    )


@PROPERTY
@given(
    low=st.floats(1e-4, 1e3),
    decades=st.floats(0.5, 6),
    half=st.integers(1, 200),
    seed=st.integers(0, 10_000),
)
def test_a_log_scale_spreads_points_evenly_in_log_space(
    low: float, decades: float, half: int, seed: int
) -> None:
    high = low * 10**decades
    model = numeric_model(low, high, False, False, log=True, integer=False)
    values = np.array([s.x for s in model.sample(2 * half, "lhs", seed=seed)])
    middle = math.sqrt(low * high)  # the middle of the range on a log scale
    assert abs(int((values < middle).sum()) - half) <= 1
    if decades >= 2:  # on a linear scale far fewer than half would be this low
        linear = numeric_model(low, high, False, False, log=False, integer=False)
        flat = np.array([s.x for s in linear.sample(2 * half, "lhs", seed=seed)])
        assert (flat < middle).sum() < (values < middle).sum() or half < 3


@PROPERTY
@given(per_value=st.integers(1, 6), seed=st.integers(0, 10_000))
def test_literal_enum_bool_and_choices_are_categories_drawn_evenly(
    per_value: int, seed: int
) -> None:
    n = 12 * per_value  # divisible by 3 (literal, enum) and by 2 (bool, weather choices)
    specs = Building.sample(n, "lhs", seed=seed, choices={"weather": WEATHER})
    for field, values in (
        ("economizer", ["none", "drybulb", "enthalpy"]),
        ("color", list(Color)),
        ("heat_pump", [False, True]),
        ("weather", WEATHER),
    ):
        counts = pd.Series([getattr(s, field) for s in specs]).value_counts().to_dict()
        assert counts == dict.fromkeys(values, n // len(values)), field
    assert {s.notes for s in specs} == {"baseline"}  # held at its default


def test_fixed_holds_a_field_and_choices_override_the_declared_values() -> None:
    specs = Building.sample(
        40,
        "sobol",
        fixed={"weather": WEATHER[0], "floors": 3, "color": Color.RED},
        choices={"economizer": ["none"], "r_value": [2.0, 4.0]},
    )
    assert {s.weather for s in specs} == {WEATHER[0]}
    assert {s.floors for s in specs} == {3}
    assert {s.color for s in specs} == {Color.RED}
    assert {s.economizer for s in specs} == {"none"}
    assert {s.r_value for s in specs} == {2.0, 4.0}
    assert specs.design.fixed == {"weather": "weather/boston.csv", "floors": 3, "color": "red"}
    assert list(specs.design.dimensions) == ["r_value", "ach", "lpd", "economizer", "heat_pump"]


def test_ranges_narrow_a_field_within_its_bounds() -> None:
    specs = Building.sample(64, "halton", choices={"weather": WEATHER}, ranges={"r_value": (2, 3)})
    assert all(2 <= s.r_value <= 3 for s in specs)
    with pytest.raises(DesignError, match=r"ranges\['r_value'\].*within the field's bounds"):
        Building.sample(4, choices={"weather": WEATHER}, ranges={"r_value": (0, 3)})
    with pytest.raises(DesignError, match=r"ranges\['economizer'\] is for numeric fields"):
        Building.sample(4, choices={"weather": WEATHER}, ranges={"economizer": (0, 1)})


class Unplaceable(ExperimentInputSpec):
    ok: float = Field(ge=0, le=1)
    label: str
    upper_only: float = Field(le=3)
    weather: FileReference
    when: dt.date
    history: Any = Field(json_schema_extra={"kind": "anything"})
    curve: list[float] = Field(json_schema_extra=None)
    kept: int = 4


UNPLACEABLE = ("label", "upper_only", "weather", "when", "history", "curve")


@PROPERTY
@given(held=st.sets(st.sampled_from(UNPLACEABLE)))
def test_one_error_names_every_field_that_cannot_be_sampled(held: set[str]) -> None:
    fixed = {name: _a_value(name) for name in held}
    missing = [name for name in UNPLACEABLE if name not in held]
    if not missing:
        specs = Unplaceable.sample(3, fixed=fixed)
        assert {s.kept for s in specs} == {4} and len(specs) == 3
        return
    with pytest.raises(DesignError) as caught:
        Unplaceable.sample(3, fixed=fixed)
    message = str(caught.value)
    assert f"cannot sample {len(missing)} field(s)" in message
    for name in UNPLACEABLE:
        assert (f"{name} (" in message) == (name in missing), name
    assert "ok (" not in message and "kept (" not in message
    assert "choices=" in message and "fixed=" in message


def _a_value(name: str) -> Any:
    return {
        "label": "a",
        "upper_only": 1.0,
        "weather": Path("w.csv"),
        "when": dt.date(2024, 1, 1),
        "history": {"any": 1},
        "curve": [1.0, 2.0],
    }[name]


def test_misspelled_or_conflicting_arguments_are_named() -> None:
    with pytest.raises(DesignError, match=r"fixed\['r_valu'\] is not an input field \(did you"):
        Building.sample(2, fixed={"r_valu": 1.0, "weather": WEATHER[0]})
    with pytest.raises(DesignError, match="'weather' is both fixed and given choices"):
        Building.sample(2, fixed={"weather": WEATHER[0]}, choices={"weather": WEATHER})
    with pytest.raises(DesignError, match="method 'latin' is not one of"):
        Building.sample(2, "latin", fixed={"weather": WEATHER[0]})
    with pytest.raises(DesignError, match="n must be a positive integer"):
        Building.sample(0, fixed={"weather": WEATHER[0]})
    with pytest.raises(DesignError, match="log scale needs a lower bound above 0"):
        numeric_model(0, 1, True, False, log=True, integer=False).sample(2)


class Setpoints(ExperimentInputSpec):
    heating: float = Field(ge=10, le=25)
    cooling: float = Field(ge=18, le=32)

    @model_validator(mode="after")
    def _deadband(self) -> Self:
        if self.cooling < self.heating:
            raise ValueError("cooling must be >= heating")
        return self


def test_specs_the_models_own_validators_reject_are_named_with_the_fix() -> None:
    with pytest.raises(DesignError) as caught:
        Setpoints.sample(200, "random", seed=3)
    message = str(caught.value)
    assert "spec #" in message and "cooling must be >= heating" in message
    assert "ranges={name: (low, high)}" in message
    specs = Setpoints.sample(50, ranges={"heating": (15, 20), "cooling": (22, 28)})
    assert all(s.cooling >= s.heating for s in specs)


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


class Small(ExperimentInputSpec):
    a: float = Field(ge=0, le=1)
    b: int = Field(ge=1, le=100, json_schema_extra={"scale": "log"})
    c: float = Field(gt=0, lt=10)
    kind: Literal["x", "y"]


@PROPERTY
@given(a=st.integers(1, 5), b=st.integers(1, 4), c=st.integers(1, 4))
def test_a_grid_is_the_full_factorial_of_its_levels(a: int, b: int, c: int) -> None:
    specs = Small.sample(method="grid", levels={"a": a, "b": b, "c": c})
    assert len(specs) == a * b * c * 2 == specs.design.n
    rows = {(s.a, s.b, s.c, s.kind) for s in specs}
    axes = [sorted({getattr(s, f) for s in specs}, key=str) for f in ("a", "b", "c", "kind")]
    assert rows == set(itertools.product(*axes))  # every combination, each once
    assert [len(v) for v in axes] == [a, b, c, 2]
    assert all(0 < s.c < 10 for s in specs)  # exclusive bounds are not levels
    if a > 1:
        assert axes[0][0] == 0.0 and axes[0][-1] == 1.0  # inclusive bounds are
    assert specs.design.levels == {"a": a, "b": b, "c": c}


def test_a_grid_beyond_the_limit_is_refused_until_the_limit_is_raised() -> None:
    with pytest.raises(
        DesignError, match=r"has 2,000 specs, more than max_grid=1,000.*max_grid=2000"
    ):
        Small.sample(method="grid", levels=10, max_grid=1000)
    assert len(Small.sample(method="grid", levels=10, max_grid=2000)) == 2000
    with pytest.raises(DesignError, match="pass n=None"):
        Small.sample(5, method="grid", levels=2)
    with pytest.raises(DesignError, match="needs levels for"):
        Small.sample(method="grid", levels={"a": 2})
    with pytest.raises(DesignError, match="categories and choices always take every value"):
        Small.sample(method="grid", levels={"a": 2, "b": 2, "c": 2, "kind": 1})


# --------------------------------------------------------------------------------------------
# Reproducibility, chunks, the design record
# --------------------------------------------------------------------------------------------


def _plain(specs: Any) -> list[dict[str, Any]]:
    return [s.model_dump() for s in specs]


@PROPERTY
@given(
    method=st.sampled_from(SAMPLED),
    n=st.integers(1, 500),
    chunk=st.integers(1, 97),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_seed_alone_decides_the_specs_whatever_the_chunk_size(
    method: str, n: int, chunk: int, seed: int
) -> None:
    choices = {"weather": WEATHER}
    whole = Building.sample(n, method, seed=seed, choices=choices)
    again = Building.sample(n, method, seed=seed, choices=choices)
    chunks = Building.sample(n, method, seed=seed, choices=choices, chunk_size=chunk)
    assert _plain(whole) == _plain(again)
    sizes = [len(c) for c in chunks]
    assert sum(sizes) == n == len(chunks) and max(sizes) <= chunk
    assert _plain(whole) == _plain(chunks.specs())
    assert _plain(chunks.specs()) == _plain(chunks.specs())  # iterating again draws it again
    if n > 1:
        other = Building.sample(n, method, seed=seed + 1, choices=choices)
        assert [s.r_value for s in other] != [s.r_value for s in whole]


@pytest.mark.parametrize("method", [*SAMPLED, "grid"])
def test_the_design_record_draws_the_same_specs_again(method: str) -> None:
    kwargs: dict[str, Any] = {"levels": 2} if method == "grid" else {}
    n = None if method == "grid" else 33
    specs = Building.sample(
        n,
        method,
        seed=7,
        choices={"weather": WEATHER},
        fixed={"color": Color.BLUE},
        ranges={"lpd": (1, 5)},
        **kwargs,
    )
    # what a manifest holds: plain YAML
    record = Design.from_dict(yaml.safe_load(yaml.safe_dump(specs.design.to_dict())))
    assert record == specs.design
    assert record.input_class.endswith(":Building")
    again = Building.sample(**record.arguments())
    assert _plain(again) == _plain(specs)


def test_chunks_never_hold_more_than_two_chunks_of_specs_at_once() -> None:
    live: set[int] = set()
    peak = 0

    class Counted(ExperimentInputSpec):
        x: float = Field(ge=0, le=1)

        def model_post_init(self, context: Any) -> None:
            nonlocal peak
            live.add(id(self))
            peak = max(peak, len(live))
            weakref.finalize(self, live.discard, id(self))

    chunks = Counted.sample(20_000, "sobol", chunk_size=500)
    assert not live  # nothing is made until the chunks are iterated
    total = sum(1 for _ in chunks.specs())
    gc.collect()
    assert total == 20_000
    assert 500 <= peak <= 2 * 500  # the chunk being read, and the next one as it is made


# --------------------------------------------------------------------------------------------
# allocate records the design; specs files
# --------------------------------------------------------------------------------------------


class TinyOut(ExperimentOutputSpec):
    y: float


def test_allocate_records_the_design_and_the_code_version(tmp_path: Path) -> None:
    weather = tmp_path / "w.csv"
    weather.write_text("t\n1\n")

    class Doubling(Experiment[Plain, TinyOut]):
        def run(self, spec: Plain, ctx: LeafContext) -> TinyOut:
            return TinyOut(y=2 * spec.x)

    specs = Plain.sample(16, "sobol", seed=4, choices={"weather": [weather]})
    store = LocalStore(tmp_path / "store")
    run = Doubling.allocate(specs, store=store, engine=LocalEngine(max_workers=1)).wait()
    manifest = run.manifest()
    assert manifest.design == specs.design.to_dict()
    assert manifest.design["method"] == "sobol" and manifest.design["n"] == 16
    raw = yaml.safe_load((Path(run.uri.removeprefix("file://")) / "manifest.yml").read_text())
    assert raw["design"]["seed"] == 4
    # this test module lives in the project's git work tree
    assert manifest.code_version is not None and len(manifest.code_version["commit"]) == 40
    # chunked specs stream into allocate, and are recorded too
    chunks = Plain.sample(16, "halton", seed=5, choices={"weather": [weather]}, chunk_size=5)
    run = Doubling.allocate(chunks, store=store, engine=LocalEngine(max_workers=1))
    assert run.wait().manifest().design == chunks.design.to_dict()
    assert len(run.results.scalars()) == 16
    # a hand-made list has no design
    plain = [Plain(x=0.5, mode="a", weather=weather)]
    assert Doubling.allocate(plain, store=store).wait().manifest().design is None


class Unit(ExperimentInputSpec):
    """Plain fields only: allocate takes its sampled chunks as columns."""

    x: float = Field(ge=0, le=1)
    n: int = Field(ge=1, le=5)
    label: str = "held"


def test_a_plain_models_sampled_chunks_are_allocated_as_columns(tmp_path: Path) -> None:
    """No spec object is made per row, and the run holds exactly the specs the chunks make."""

    class Summing(Experiment[Unit, TinyOut]):
        def run(self, spec: Unit, ctx: LeafContext) -> TinyOut:
            return TinyOut(y=spec.x + spec.n)

    chunks = Unit.sample(300, "lhs", seed=2, fixed={"n": 3}, chunk_size=64)
    taken = list(spec_chunks(Summing, chunks))
    assert all(isinstance(chunk, ColumnChunk) for chunk in taken)
    assert sum(len(chunk) for chunk in taken) == 300
    store = LocalStore(tmp_path / "store")
    run = Summing.allocate(chunks, store=store, engine=LocalEngine(max_workers=1)).wait()
    assert run.manifest().design == chunks.design.to_dict()
    stored = pd.read_parquet(store.root / run.layout.specs)
    assert stored["__spec__"].isna().all()  # taken as columns: no JSON, no objects
    made = [(s.x, s.n, s.label) for s in chunks.specs()]
    assert list(zip(stored["x"], stored["n"], stored["label"], strict=True)) == made
    scalars = run.results.scalars().reset_index()
    assert list(scalars["y"]) == [x + n for x, n, _ in made]


def test_a_pinned_value_columns_cannot_hold_is_checked_spec_by_spec(tmp_path: Path) -> None:
    class Holding(Experiment[Unit, TinyOut]):
        def run(self, spec: Unit, ctx: LeafContext) -> TinyOut:
            return TinyOut(y=spec.x)

    chunks = Unit.sample(10, "lhs", fixed={"n": 2**70}, chunk_size=4)  # beyond int64
    assert not any(isinstance(chunk, ColumnChunk) for chunk in spec_chunks(Holding, chunks))
    store = LocalStore(tmp_path / "store")
    with pytest.raises(SpecValidationError, match=r"spec #9: field 'n': Input should be less"):
        Holding.allocate(chunks, store=store)
    assert list(store.list_keys("")) == []


class Plain(ExperimentInputSpec):
    x: float = Field(ge=0, le=1)
    mode: Literal["a", "b"]
    weather: FileReference
    curve: Annotated[list[float], NotIndexed] = Field(default_factory=lambda: [1.0])


def test_a_specs_file_round_trips_specs_and_design(tmp_path: Path) -> None:
    class Reader(Experiment[Plain, TinyOut]):
        def run(self, spec: Plain, ctx: LeafContext) -> TinyOut:
            return TinyOut(y=spec.x)

    path = write_sample_file(
        Reader,
        250,
        tmp_path / "specs.pq",
        method="lhs",
        seed=9,
        choices={"weather": WEATHER},
        chunk_size=60,
    )
    table = pd.read_parquet(path)
    assert len(table) == 250 and {"x", "mode", "weather", "__spec__"} <= set(table.columns)
    chunks = read_sample_file(Reader, path, chunk_size=100)
    expected = Plain.sample(250, "lhs", seed=9, choices={"weather": WEATHER})
    assert len(chunks) == 250 and chunks.design == expected.design
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert _plain(chunks.specs()) == _plain(expected)

    class Other(Experiment[Building, TinyOut]):
        def run(self, spec: Building, ctx: LeafContext) -> TinyOut:
            return TinyOut(y=0)

    with pytest.raises(ValueError, match=r"holds specs of .*:Plain, but other takes"):
        read_sample_file(Other, path)
    (tmp_path / "bare.pq").write_bytes(b"")
    pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "bare.pq")
    with pytest.raises(ValueError, match="is not a specs file"):
        read_sample_file(Reader, tmp_path / "bare.pq")


def test_sobol_warns_when_n_is_not_a_power_of_two() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Small.sample(100, "sobol")
        Small.sample(128, "sobol")
    messages = [str(w.message) for w in caught if "balanced" in str(w.message)]
    assert len(messages) == 1 and "128 would be" in messages[0]


def test_not_indexed_fields_can_be_held_or_chosen() -> None:
    class Curves(ExperimentInputSpec):
        x: float = Field(ge=0, le=1)
        curve: Annotated[list[float], NotIndexed]

    specs = Curves.sample(10, choices={"curve": [[1.0, 2.0], [3.0]]})
    assert {tuple(s.curve) for s in specs} <= {(1.0, 2.0), (3.0,)}
    assert Curves.sample(2, fixed={"curve": [0.5]})[0].curve == [0.5]


def test_a_grid_records_the_levels_asked_so_it_draws_the_same_grid_again() -> None:
    few = numeric_model(1, 3, False, False, log=False, integer=True)
    grid = few.sample(method="grid", levels=5)
    assert sorted(s.x for s in grid) == [1, 2, 3]  # only three integers to choose from
    assert grid.design.levels == {"x": 5} and grid.design.n == 3
    assert _plain(few.sample(**grid.design.arguments())) == _plain(grid)
