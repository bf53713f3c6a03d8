"""allocate checks everything before writing anything, and never touches the caller's specs.

Experiments here return at once; successful runs use a two-process LocalEngine and a LocalStore
under tmp_path, so this file runs in a few seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field, computed_field

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    FileReference,
    LeafContext,
    LocalEngine,
    LocalStore,
    OptionalFileReference,
    SemVer,
    SpecValidationError,
)
from scythe_oo.driver import spool
from scythe_oo.runfolder import specs as specs_format

pytestmark = pytest.mark.timeout(120)


class AllocInput(ExperimentInputSpec):
    r: float = Field(ge=0, le=10, description="Radius [m].")
    label: str = Field(default="a", description="A label.")
    weather: OptionalFileReference = Field(default=None, description="Weather file.")
    extras: list[FileReference] = Field(default_factory=list, description="More files.")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def diameter(self) -> float:
        return 2 * self.r


class AllocOutput(ExperimentOutputSpec):
    area: float = Field(description="Area [m2].")


class TallocCircle(Experiment[AllocInput, AllocOutput]):
    name = "talloc_circle"
    min_batch_seconds = 0.0

    def run(self, spec: AllocInput, ctx: LeafContext) -> AllocOutput:
        return AllocOutput(area=spec.r * spec.r)


class OtherInput(ExperimentInputSpec):
    r: float = 1.0


class OtherOutput(ExperimentOutputSpec):
    value: float = 0.0


class TallocOther(Experiment[OtherInput, OtherOutput]):
    name = "talloc_other"

    def run(self, spec: OtherInput, ctx: LeafContext) -> OtherOutput:
        return OtherOutput(value=spec.r)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(root=tmp_path / "store")


@pytest.fixture
def engine() -> LocalEngine:
    return LocalEngine(max_workers=2)


def _written(store: LocalStore) -> list[Path]:
    """Every file and folder under the store root (empty when the root does not exist)."""
    return sorted(store.root.rglob("*")) if store.root.exists() else []


def _snapshot(specs: list[Any]) -> list[tuple[dict[str, Any], int, str, str | None]]:
    return [(s.model_dump(), s.sort_index, s.experiment_id, s.root_workflow_run_id) for s in specs]


def _specs_table(store: LocalStore, run: Any) -> pd.DataFrame:
    return pd.read_parquet(io.BytesIO(store.get_bytes(run.layout.specs)))


# --------------------------------------------------------------------------------------------
# Invalid specs: one error listing every problem, nothing written
# --------------------------------------------------------------------------------------------


def test_invalid_specs_are_all_listed_and_nothing_is_written(
    store: LocalStore, engine: LocalEngine
) -> None:
    out_of_range = AllocInput(r=1.0)
    out_of_range.r = 999  # validate_assignment is off, so this slips past the model
    specs: list[Any] = [
        AllocInput(r=1.0),
        out_of_range,
        AllocInput(r=2.0),
        {"r": "not a number"},
        {"r": 3.0, "label": "ok"},
        {"r": 1.0, "unknown_field": 5},
    ]
    with pytest.raises(SpecValidationError) as info:
        TallocCircle.allocate(specs, store=store, engine=engine)
    message = str(info.value)
    assert "nothing was written" in message
    assert "3 problem(s)" in message
    assert "spec #1: field 'r'" in message and "999" in message
    assert "spec #3: field 'r'" in message and "not a number" in message
    assert "spec #5: field 'unknown_field'" in message
    for good in ("spec #0", "spec #2", "spec #4"):
        assert good not in message
    assert _written(store) == []
    assert isinstance(info.value, ValueError)


def test_many_invalid_specs_are_capped_with_a_count(store: LocalStore) -> None:
    specs = [{"r": -float(i + 1)} for i in range(25)]
    with pytest.raises(SpecValidationError) as info:
        TallocCircle.allocate(specs, store=store)
    message = str(info.value)
    assert "25 problem(s)" in message
    assert "spec #0:" in message and "spec #19:" in message
    assert "spec #20:" not in message
    assert "... and 5 more" in message
    assert _written(store) == []


@pytest.mark.parametrize("empty", [[], (), iter([])])
def test_zero_specs_is_a_clear_error(store: LocalStore, empty: Any) -> None:
    with pytest.raises(SpecValidationError, match="zero specs") as info:
        TallocCircle.allocate(empty, store=store)
    assert "AllocInput" in str(info.value)
    assert _written(store) == []


@pytest.mark.parametrize("not_specs", ["r=1", 42, None])
def test_non_sequence_is_rejected(store: LocalStore, not_specs: Any) -> None:
    with pytest.raises(SpecValidationError, match="expects a AllocInput, a sequence or generator"):
        TallocCircle.allocate(not_specs, store=store)
    assert _written(store) == []


def test_spec_of_another_experiment_is_rejected_naming_the_position(store: LocalStore) -> None:
    specs: list[Any] = [AllocInput(r=1.0), AllocInput(r=2.0), OtherInput(r=1.0)]
    with pytest.raises(SpecValidationError) as info:
        TallocCircle.allocate(specs, store=store)
    message = str(info.value)
    assert "spec #2" in message
    assert "OtherInput" in message and "AllocInput" in message
    assert "spec #0" not in message and "spec #1" not in message
    assert _written(store) == []

    with pytest.raises(SpecValidationError, match=r"spec #0: is a AllocInput"):
        TallocOther.allocate([AllocInput(r=1.0)], store=store)
    assert _written(store) == []


def test_single_spec_of_another_experiment_is_rejected(store: LocalStore) -> None:
    with pytest.raises(SpecValidationError, match="spec #0"):
        TallocCircle.allocate(OtherInput(), store=store)  # type: ignore[arg-type]
    assert _written(store) == []


# --------------------------------------------------------------------------------------------
# Local input files
# --------------------------------------------------------------------------------------------


def test_missing_local_file_is_rejected_before_anything_is_written(
    store: LocalStore, tmp_path: Path
) -> None:
    present = tmp_path / "present.csv"
    present.write_text("1,2,3\n")
    missing = tmp_path / "nowhere" / "missing.csv"
    specs = [
        AllocInput(r=1.0, weather=present),
        AllocInput(r=2.0, weather="s3://bucket/remote.csv"),
        AllocInput(r=3.0, weather=missing),
        AllocInput(r=4.0, extras=[present, tmp_path / "also-missing.csv"]),
    ]
    with pytest.raises(SpecValidationError) as info:
        TallocCircle.allocate(specs, store=store)
    message = str(info.value)
    assert "nothing was written" in message
    assert "spec #2: field 'weather'" in message and str(missing) in message
    assert "spec #3: field 'extras'" in message and "also-missing.csv" in message
    assert "spec #0" not in message and "spec #1" not in message
    assert _written(store) == []


def test_directory_is_not_accepted_as_an_input_file(store: LocalStore, tmp_path: Path) -> None:
    folder = tmp_path / "a_folder"
    folder.mkdir()
    with pytest.raises(SpecValidationError, match="a_folder"):
        TallocCircle.allocate([AllocInput(r=1.0, weather=folder)], store=store)
    assert _written(store) == []


def test_different_files_with_the_same_name_are_rejected(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "cold").mkdir()
    (tmp_path / "hot").mkdir()
    cold, hot = tmp_path / "cold" / "weather.csv", tmp_path / "hot" / "weather.csv"
    cold.write_text("cold\n")
    hot.write_text("hot\n")
    specs = [AllocInput(r=1.0, weather=cold), AllocInput(r=2.0, weather=hot)]
    with pytest.raises(SpecValidationError) as info:
        TallocCircle.allocate(specs, store=store)
    message = str(info.value)
    assert "spec #1: field 'weather'" in message
    assert str(cold) in message and str(hot) in message
    assert "'weather.csv'" in message
    assert _written(store) == []


def test_same_file_referenced_by_many_specs_is_uploaded_once(
    store: LocalStore, engine: LocalEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    weather = inputs / "weather.csv"
    weather.write_text("t\n1\n2\n")
    monkeypatch.chdir(tmp_path)
    relative = Path("inputs/weather.csv")  # the same file spelled two ways
    specs = [AllocInput(r=float(i), weather=weather if i % 2 else relative) for i in range(6)]

    run = TallocCircle.allocate(specs, store=store, engine=engine).wait(timeout=60)
    assert run.status == "completed"

    artifacts = store.root / run.layout.key("artifacts", "weather")
    assert [p.name for p in artifacts.iterdir()] == ["weather.csv"]
    uploaded = store.uri(run.layout.artifact("weather", "weather.csv"))
    listing = yaml.safe_load(store.get_bytes(run.layout.input_artifacts))
    assert [entry["uri"] for entry in listing["files"]["weather"]] == [uploaded]
    assert store.get_bytes(run.layout.artifact("weather", "weather.csv")) == b"t\n1\n2\n"

    table = _specs_table(store, run)
    assert list(table["weather"]) == [uploaded] * 6
    assert list(table["sort_index"]) == list(range(6))
    scalars = run.results.scalars().reset_index()
    assert sorted(scalars["area"]) == sorted(float(i) ** 2 for i in range(6))


def test_identical_content_under_the_same_name_is_accepted(
    store: LocalStore, engine: LocalEngine, tmp_path: Path
) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "w.csv", tmp_path / "b" / "w.csv"
    first.write_text("same\n")
    second.write_text("same\n")
    specs = [AllocInput(r=1.0, weather=first), AllocInput(r=2.0, weather=second)]
    run = TallocCircle.allocate(specs, store=store, engine=engine).wait(timeout=60)
    assert run.status == "completed"
    table = _specs_table(store, run)
    assert table["weather"].nunique() == 1


# --------------------------------------------------------------------------------------------
# The caller's specs are never modified
# --------------------------------------------------------------------------------------------


def test_allocate_does_not_mutate_the_callers_specs(
    store: LocalStore, engine: LocalEngine, tmp_path: Path
) -> None:
    weather = tmp_path / "weather.csv"
    weather.write_text("w\n")
    extra = tmp_path / "extra.txt"
    extra.write_text("e\n")
    second_extra = tmp_path / "second.txt"
    second_extra.write_text("s\n")
    specs = [
        AllocInput(r=1.0, weather=weather, extras=[extra]),
        AllocInput(r=2.0, label="b"),
        AllocInput(r=3.0, extras=[extra, second_extra]),
    ]
    before = _snapshot(specs)

    run = TallocCircle.allocate(specs, store=store, engine=engine).wait(timeout=60)
    assert run.status == "completed"

    assert _snapshot(specs) == before
    for spec in specs:
        assert spec.sort_index == -1
        assert spec.experiment_id == ""
        assert spec.root_workflow_run_id is None
    assert isinstance(specs[0].weather, Path) and specs[0].weather == weather
    assert isinstance(specs[0].extras[0], Path) and specs[0].extras[0] == extra
    assert isinstance(specs[2].extras[1], Path) and specs[2].weather is None

    # The stored copies, not the caller's objects, carry the bookkeeping and store URIs.
    table = _specs_table(store, run)
    assert list(table["experiment_id"]) == [run.experiment_id] * 3
    assert list(table["sort_index"]) == [0, 1, 2]
    assert table["weather"][0] == store.uri(run.layout.artifact("weather", "weather.csv"))
    assert pd.isna(table["weather"][1])
    assert table["extras"][2] == json.dumps(
        [
            store.uri(run.layout.artifact("extras", "extra.txt")),
            store.uri(run.layout.artifact("extras", "second.txt")),
        ]
    )
    assert list(table["diameter"]) == [2.0, 4.0, 6.0]


def test_single_spec_allocate_does_not_mutate_it(
    store: LocalStore, engine: LocalEngine, tmp_path: Path
) -> None:
    weather = tmp_path / "weather.csv"
    weather.write_text("w\n")
    spec = AllocInput(r=4.0, weather=weather)
    before = _snapshot([spec])
    run = TallocCircle.allocate(spec, store=store, engine=engine).wait(timeout=60)
    assert run.status == "completed"
    assert _snapshot([spec]) == before
    assert isinstance(spec.weather, Path)
    assert run.manifest().one_off is True


def test_failed_validation_does_not_mutate_the_callers_specs(
    store: LocalStore, tmp_path: Path
) -> None:
    good = AllocInput(r=1.0, weather=tmp_path / "missing.csv")
    before = _snapshot([good])
    with pytest.raises(SpecValidationError):
        TallocCircle.allocate([good], store=store)
    assert _snapshot([good]) == before
    assert _written(store) == []


def test_file_used_in_two_fields_is_referenced_under_each_field(
    store: LocalStore, engine: LocalEngine, tmp_path: Path
) -> None:
    shared = tmp_path / "shared.csv"
    shared.write_text("s\n")
    run = TallocCircle.allocate(
        [AllocInput(r=1.0, weather=shared, extras=[shared])], store=store, engine=engine
    ).wait(timeout=60)
    table = _specs_table(store, run)
    assert table["weather"][0] == store.uri(run.layout.artifact("weather", "shared.csv"))
    assert json.loads(table["extras"][0]) == [
        store.uri(run.layout.artifact("extras", "shared.csv"))
    ]


class ChunkedInput(ExperimentInputSpec):
    k: int

    @property
    def computed_features(self) -> dict[str, Any]:
        # ints for the first specs, floats after: chunks of specs.pq disagree on the type
        return {"scaled": self.k if self.k < 4 else self.k / 2}


class ChunkedSquare(Experiment[ChunkedInput, AllocOutput]):
    name = "chunked_square"
    min_batch_seconds = 0.0

    def run(self, spec: ChunkedInput, ctx: LeafContext) -> AllocOutput:
        return AllocOutput(area=float(spec.k * spec.k))


@pytest.mark.parametrize(
    ("chunk_rows", "in_memory"), [(3, 0), (3, spool.MEMORY_BYTES), (1_000, spool.MEMORY_BYTES)]
)
def test_specs_written_in_chunks_equal_one_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int, in_memory: int
) -> None:
    """specs.pq is written a chunk at a time; chunks whose computed features were typed
    differently are unified, so the table is the same whatever the chunk size, and whether
    the spool kept the chunks in memory or on disk."""
    monkeypatch.setattr(specs_format, "SPECS_CHUNK_ROWS", chunk_rows)
    monkeypatch.setattr(spool, "MEMORY_BYTES", in_memory)
    store = LocalStore(root=tmp_path)
    specs = [ChunkedInput(k=k) for k in range(10)]

    run = ChunkedSquare.allocate(specs, store=store, engine=LocalEngine(max_workers=2))
    run.wait(timeout=60)

    table = pd.read_parquet(store.root / run.layout.specs)
    assert table["sort_index"].tolist() == list(range(10))
    assert table["k"].tolist() == list(range(10))
    assert table["scaled"].tolist() == [0, 1, 2, 3, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5]
    assert str(table["scaled"].dtype) == "float64"
    scalars = run.results.scalars()
    assert scalars["area"].tolist() == [float(k * k) for k in range(10)]


# --------------------------------------------------------------------------------------------
# Every input is checked before anything is written (issue 12, part 2), and specs come from
# lists, generators, tables and files (issue 15, part 3)
# --------------------------------------------------------------------------------------------


class ValueInput(ExperimentInputSpec):
    x: float
    n: int
    text: str
    mode: Literal[1, "auto"] = "auto"


class ValueOutput(ExperimentOutputSpec):
    ok: bool


class Values(Experiment[ValueInput, ValueOutput]):
    """Stores whatever it is given; the run itself has nothing to do."""

    name = "talloc_values"
    min_batch_seconds = 0.0

    def run(self, spec: ValueInput, ctx: LeafContext) -> ValueOutput:
        return ValueOutput(ok=True)


INT64 = 2**63
spec_values = st.fixed_dictionaries(
    {
        "x": st.floats(allow_nan=True, allow_infinity=True),
        "n": st.one_of(st.integers(-(2**70), 2**70), st.integers(-1000, 1000)),
        "text": st.text(
            alphabet=st.characters(codec=None, exclude_categories=("Cc",)), max_size=12
        ),
        "mode": st.sampled_from([1, "auto"]),
    }
)


def unstorable(values: dict[str, Any]) -> str | None:
    """The field a value of which cannot be stored, or None."""
    if not -INT64 <= values["n"] < INT64:
        return "n"
    try:
        values["text"].encode("utf-8")
    except UnicodeEncodeError:
        return "text"
    return None


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(spec_values, min_size=1, max_size=6))
def test_specs_are_stored_exactly_or_refused_before_anything_is_written(
    rows: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory
) -> None:
    store = LocalStore(tmp_path_factory.mktemp("store"))
    specs = [ValueInput(**row) for row in rows]
    bad = [(i, field) for i, row in enumerate(rows) if (field := unstorable(row))]
    if bad:
        with pytest.raises(SpecValidationError) as info:
            Values.allocate(specs, store=store)
        message = str(info.value)
        for position, field in bad[:5]:
            assert f"spec #{position}: field {field!r}" in message
        assert list(store.list_keys("")) == []  # not even a run folder
        return
    run = Values.allocate(specs, store=store, engine=LocalEngine(max_workers=1)).wait(timeout=60)
    assert run.status == "completed"
    table = pd.read_parquet(store.root / run.layout.specs)
    for i, row in enumerate(rows):
        stored = ValueInput.model_validate_json(table["__spec__"].iloc[i])
        for field, value in row.items():
            assert equal(getattr(stored, field), value), (i, field)
        assert equal(table["x"].iloc[i], row["x"]) and table["n"].iloc[i] == row["n"]
        assert table["mode"].iloc[i] == str(row["mode"])  # a mixed Literal is text in the index


class FeatureInput(ExperimentInputSpec):
    k: int

    @property
    def computed_features(self) -> dict[str, Any]:
        return {"kind": self.k if self.k % 2 else f"even-{self.k}"}


class Features(Experiment[FeatureInput, ValueOutput]):
    name = "talloc_features"

    def run(self, spec: FeatureInput, ctx: LeafContext) -> ValueOutput:
        return ValueOutput(ok=True)


@pytest.mark.parametrize("chunk_rows", [3, 50_000])
def test_a_computed_feature_of_two_types_is_refused_naming_it(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch, chunk_rows: int
) -> None:
    monkeypatch.setattr(specs_format, "SPECS_CHUNK_ROWS", chunk_rows)
    with pytest.raises(SpecValidationError, match="'kind'") as info:
        Features.allocate([FeatureInput(k=k) for k in range(8)], store=store)
    assert "int" in str(info.value) and "str" in str(info.value).replace("string", "str")
    assert list(store.list_keys("")) == []


@pytest.mark.parametrize(
    "version", ["v1.2", "v-1.0.0", "../../escape", "v1.0.0/../x", "v" + "9" * 12 + ".0.0"]
)
def test_an_unusable_version_is_refused_before_anything_is_written(
    store: LocalStore, version: str
) -> None:
    with pytest.raises(ValueError, match="version"):
        TallocCircle.allocate([AllocInput(r=1)], store=store, version=version)
    assert list(store.list_keys("")) == []


def test_semver_parts_are_checked() -> None:
    with pytest.raises(ValueError, match="from 0 to"):
        SemVer(-1, 0, 0)
    with pytest.raises(ValueError, match="from 0 to"):
        SemVer(1, True, 0)  # type: ignore[arg-type]
    assert str(SemVer.parse(" v1.2.3 ")) == "v1.2.3"


def test_a_file_uri_input_is_checked_and_uploaded_like_a_path(
    store: LocalStore, tmp_path: Path
) -> None:
    data = tmp_path / "w.csv"
    data.write_text("t,c\n0,1\n")
    missing = (tmp_path / "gone.csv").as_uri()
    with pytest.raises(SpecValidationError, match=r"gone\.csv does not exist"):
        TallocCircle.allocate([AllocInput(r=1, weather=missing)], store=store)  # type: ignore[arg-type]
    assert list(store.list_keys("")) == []

    run = TallocCircle.allocate(
        [AllocInput(r=1, weather=data.as_uri())],  # type: ignore[arg-type]
        store=store,
        engine=LocalEngine(max_workers=1),
    ).wait(timeout=60)
    (uri,) = pd.read_parquet(store.root / run.layout.specs)["weather"]
    assert uri == store.uri(run.layout.artifact("weather", "w.csv"))


def test_the_recorded_hash_is_that_of_the_uploaded_bytes(store: LocalStore, tmp_path: Path) -> None:
    """The file changes after its spec was checked (the generator rewrites it once the first
    chunk is read): the run keeps the bytes that were checked, under their own hash."""
    data = tmp_path / "w.csv"
    data.write_text("first version\n")

    def specs() -> Iterator[AllocInput]:
        yield AllocInput(r=1, weather=data)
        for i in range(5000):
            if i == 4500:  # the first chunk (4096 specs) has been checked by now
                data.write_text("second version, written during allocate\n")
            yield AllocInput(r=2)

    run = TallocCircle.allocate(specs(), store=store, engine=LocalEngine(max_workers=2))
    run.wait(timeout=120)
    artifacts = yaml.safe_load((store.root / run.layout.input_artifacts).read_text())
    (entry,) = artifacts["files"]["weather"]
    stored = (store.root / run.layout.artifact("weather", "w.csv")).read_bytes()
    assert stored == b"first version\n"
    assert entry["sha256"] == hashlib.sha256(stored).hexdigest()


def test_specs_from_a_generator_a_frame_and_files_give_the_same_table(
    store: LocalStore, tmp_path: Path
) -> None:
    rows = [{"r": r / 2, "label": f"l{r}"} for r in range(7)]
    frame = pd.DataFrame(rows)
    frame.to_parquet(tmp_path / "specs.pq")
    frame.to_csv(tmp_path / "specs.csv", index=False)
    frame.to_json(tmp_path / "specs.jsonl", orient="records", lines=True)
    sources: list[Any] = [
        (AllocInput(**row) for row in rows),
        frame,
        [frame.iloc[:3], frame.iloc[3:]],  # chunks, as the sampler yields them
        tmp_path / "specs.pq",
        str(tmp_path / "specs.csv"),
        tmp_path / "specs.jsonl",
    ]
    tables = []
    for source in sources:
        run = TallocCircle.allocate(source, store=store, engine=LocalEngine(max_workers=1))
        scalars = run.wait(timeout=60).results.scalars()
        tables.append(scalars.reset_index(["experiment_id", "root_workflow_run_id"], drop=True))
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])


def test_a_bad_row_of_a_frame_is_named(store: LocalStore) -> None:
    frame = pd.DataFrame({"r": [1.0, 2.0, 99.0, 3.0], "label": ["a", "b", "c", None]})
    with pytest.raises(SpecValidationError) as info:
        TallocCircle.allocate(frame, store=store)
    message = str(info.value)
    assert "spec #2: field 'r'" in message and "spec #3: field 'label'" in message
    assert list(store.list_keys("")) == []
