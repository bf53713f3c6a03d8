"""Definition time: experiment classes, their settings and schemas, the registry, RecursionPolicy,
durations and Timeouts, and the SCYTHE_* settings. Mistakes are caught when the class statement
runs, naming the class, the attribute and the fix."""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import json
import types
from collections.abc import Iterator
from pathlib import Path, PurePath
from typing import Annotated, Any, Generic, Literal, Optional, TypeVar

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from pydantic import (
    AnyUrl,
    BaseModel,
    Field,
    FileUrl,
    HttpUrl,
    TypeAdapter,
    ValidationError,
    computed_field,
)

from scythe_oo import (
    REGISTRY,
    Experiment,
    ExperimentDefinitionError,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    FileReference,
    LeafContext,
    NotIndexed,
    OptionalFileReference,
    RecursionPolicy,
    Timeouts,
    UnknownExperimentError,
    WorkerLabel,
)
from scythe_oo.definition.checks import snake_case
from scythe_oo.definition.schema import ExperimentSchema, FieldKind
from scythe_oo.definition.settings import Settings
from scythe_oo.definition.timeouts import parse_duration
from scythe_oo.tree.scatter import child_sizes

pytestmark = pytest.mark.usefixtures("isolated_registry")


class Geometry(ExperimentInputSpec):
    radius: float = Field(description="Sphere radius in metres.")
    count: int = Field(default=1, description="How many spheres.")


class Energy(ExperimentOutputSpec):
    energy: float = Field(description="Total energy in joules.")


def _location(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def test_snake_case_names() -> None:
    assert snake_case("SimulateEnergy") == "simulate_energy"
    assert snake_case("HTTPFetch") == "http_fetch"
    assert snake_case("Sweep") == "sweep"


def test_concrete_subclass_is_registered_under_its_snake_case_name() -> None:
    class SimulateEnergy(Experiment[Geometry, Energy]):
        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=spec.radius)

    assert SimulateEnergy.name == "simulate_energy"
    assert "simulate_energy" in REGISTRY
    assert REGISTRY.get("simulate_energy") is SimulateEnergy
    assert SimulateEnergy.abstract is False
    assert SimulateEnergy.schema.input_type is Geometry
    assert SimulateEnergy.schema.output_type is Energy


def test_explicit_name_overrides_the_default() -> None:
    class NamedExperiment(Experiment[Geometry, Energy]):
        name = "custom"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    assert NamedExperiment.name == "custom"
    assert REGISTRY.get("custom") is NamedExperiment
    assert "named_experiment" not in REGISTRY


def test_unknown_name_suggests_a_close_match() -> None:
    class LookupTarget(Experiment[Geometry, Energy]):
        name = "lookup_target"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    with pytest.raises(UnknownExperimentError) as info:
        REGISTRY.get("lookup_trget")
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "'lookup_trget'" in message
    assert "Did you mean" in message and "'lookup_target'" in message

    with pytest.raises(KeyError) as far:  # catchable as a plain KeyError too
        REGISTRY.get("zzzz_nothing_like_this_qqqq")
    assert "Did you mean" not in str(far.value)


def test_duplicate_name_from_another_class_names_both_locations() -> None:
    def first() -> type:
        class DupFirst(Experiment[Geometry, Energy]):
            name = "duplicate"

            def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

        return DupFirst

    original = first()
    with pytest.raises(ExperimentDefinitionError) as info:

        class DupSecond(Experiment[Geometry, Energy]):
            name = "duplicate"

            def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
                return Energy(energy=2.0)

    message = str(info.value)
    assert _location(original) in message
    assert "test_duplicate_name_from_another_class_names_both_locations.<locals>.DupSecond" in (
        message
    )
    assert "'duplicate'" in message
    assert REGISTRY.get("duplicate") is original  # the first one keeps the name


def _build_redefinable(energy: float) -> type:
    class Redefined(Experiment[Geometry, Energy]):
        name = "redefined"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=energy)

    return Redefined


def test_redefining_the_same_qualname_replaces_the_class() -> None:
    old = _build_redefinable(1.0)
    new = _build_redefinable(2.0)  # same module.qualname, like a re-run notebook cell
    assert old is not new
    assert _location(old) == _location(new)
    assert REGISTRY.get("redefined") is new


# --------------------------------------------------------------------------------------------
# Generic parameters and run()
# --------------------------------------------------------------------------------------------


def test_non_spec_input_type_is_rejected_naming_the_class() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class IntInput(Experiment[int, Energy]):  # type: ignore[type-var]
            name = "int_input"

            def run(self, spec: Any, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

    message = str(info.value)
    assert "IntInput" in message
    assert "int" in message and "ExperimentInputSpec" in message
    assert "int_input" not in REGISTRY


def test_swapped_type_parameters_are_rejected() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class Swapped(Experiment[Energy, Geometry]):  # type: ignore[type-var]
            name = "swapped"

            def run(self, spec: Any, ctx: LeafContext) -> Any:
                return None

    message = str(info.value)
    assert "Swapped" in message
    assert "Energy" in message and "ExperimentInputSpec" in message
    assert "swapped" not in REGISTRY


def test_non_spec_output_type_is_rejected() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class StrOutput(Experiment[Geometry, str]):  # type: ignore[type-var]
            name = "str_output"

            def run(self, spec: Geometry, ctx: LeafContext) -> str:
                return ""

    assert "StrOutput" in str(info.value)
    assert "ExperimentOutputSpec" in str(info.value)


@pytest.mark.parametrize("bad", [list[Geometry], Optional[Geometry]])  # noqa: UP045
def test_non_class_type_argument_is_rejected(bad: Any) -> None:
    with pytest.raises(ExperimentDefinitionError, match="NonClassArg"):

        class NonClassArg(Experiment[bad, Energy]):  # type: ignore[valid-type]
            name = "non_class_arg"

            def run(self, spec: Any, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)


@pytest.mark.parametrize(
    "source",
    [
        "def run(self, spec): ...",
        "def run(self, spec, ctx, extra): ...",
        "def run(self, *args): ...",
        "def run(self, spec, *, ctx): ...",
    ],
)
def test_run_with_wrong_signature_is_rejected(source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(ExperimentDefinitionError) as info:

        class BadSignature(Experiment[Geometry, Energy]):
            name = "bad_signature"
            run = namespace["run"]

    message = str(info.value)
    assert "BadSignature" in message
    assert "wrong signature" in message
    assert "def run(self, spec: Geometry, ctx: LeafContext) -> Energy" in message
    assert "bad_signature" not in REGISTRY


def test_run_with_extra_optional_parameter_is_accepted() -> None:
    class OptionalExtra(Experiment[Geometry, Energy]):
        name = "optional_extra"

        def run(self, spec: Geometry, ctx: LeafContext, scale: float = 1.0) -> Energy:
            return Energy(energy=spec.radius * scale)

    assert REGISTRY.get("optional_extra") is OptionalExtra


def test_class_without_run_is_rejected() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class NoRun(Experiment[Geometry, Energy]):
            name = "no_run"

    message = str(info.value)
    assert "NoRun" in message
    assert "def run(self, spec, ctx)" in message
    assert "no_run" not in REGISTRY


# --------------------------------------------------------------------------------------------
# Bases, abstract classes, inheritance
# --------------------------------------------------------------------------------------------

InT = TypeVar("InT", bound=ExperimentInputSpec)
OutT = TypeVar("OutT", bound=ExperimentOutputSpec)


class GenericBase(Experiment[InT, OutT], Generic[InT, OutT]):
    """A reusable base: still generic, so never registered."""

    name = "generic_base"
    retries = 2

    def run(self, spec: InT, ctx: LeafContext) -> OutT:
        raise NotImplementedError


def test_generic_intermediate_base_is_not_registered() -> None:
    assert "generic_base" not in REGISTRY
    assert GenericBase.__scythe_generic__ == (InT, OutT)  # type: ignore[attr-defined]


def test_concrete_child_of_generic_base_is_registered_with_its_types() -> None:
    class GenericChild(GenericBase[Geometry, Energy]):
        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=spec.radius)

    assert GenericChild.name == "generic_child"  # not the base's explicit name
    assert REGISTRY.get("generic_child") is GenericChild
    assert GenericChild.schema.input_type is Geometry
    assert GenericChild.schema.output_type is Energy
    assert GenericChild.retries == 2  # settings are inherited


def test_abstract_true_prevents_registration_but_children_register() -> None:
    class AbstractBase(Experiment[Geometry, Energy]):
        name = "abstract_base"
        abstract = True

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    assert "abstract_base" not in REGISTRY

    class AbstractChild(AbstractBase):
        name = "abstract_child"

    assert REGISTRY.get("abstract_child") is AbstractChild
    assert AbstractChild.abstract is False
    assert AbstractChild.schema.input_type is Geometry


def test_subclass_of_concrete_experiment_inherits_types() -> None:
    class Parent(Experiment[Geometry, Energy]):
        name = "parent"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    class ParentVariant(Parent):
        name = "parent_variant"
        retries = 3

    assert REGISTRY.get("parent") is Parent
    assert REGISTRY.get("parent_variant") is ParentVariant
    assert ParentVariant.schema.input_type is Geometry
    assert ParentVariant.schema.output_type is Energy
    assert Parent.retries == 0


# --------------------------------------------------------------------------------------------
# Class attribute validation
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("worker_labels", "has_gpu"),
        ("worker_labels", WorkerLabel.HAS_GPU),
        ("worker_labels", {"gpu"}),
        ("worker_labels", 3),
        ("retries", -1),
        ("retries", True),
        ("retries", 1.5),
        ("timeouts", "5m"),
        ("timeouts", 30),
        ("recursion", 3),
        ("recursion", {"factor": 2}),
        ("version_policy", "bumpy"),
        ("version_policy", None),
        ("min_batch_seconds", -1),
        ("name", "../evil"),
        ("name", "a b"),
        ("name", ""),
        ("name", ".hidden"),
        ("name", "a..b"),
        ("name", "x" * 101),
        ("name", 5),
    ],
)
def test_bad_class_attribute_is_rejected_naming_class_and_attribute(
    attribute: str, value: Any
) -> None:
    body: dict[str, Any] = {"name": "bad_attribute", attribute: value}
    with pytest.raises(ExperimentDefinitionError) as info:

        class BadAttribute(Experiment[Geometry, Energy]):
            locals().update(body)

            def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

    message = str(info.value)
    assert "BadAttribute" in message
    assert attribute in message
    assert "bad_attribute" not in REGISTRY


def test_valid_class_attributes_are_accepted_and_normalised() -> None:
    class GoodAttributes(Experiment[Geometry, Energy]):
        name = "good.attributes-1_x"
        worker_labels = {"has_gpu", WorkerLabel.HIGH_MEMORY}  # type: ignore[assignment]
        retries = 2
        timeouts = Timeouts(execution="5m")
        recursion = RecursionPolicy(factor=4, max_depth=2)
        version_policy = "bumppatch"
        min_batch_seconds = 0

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    assert GoodAttributes.worker_labels == frozenset({WorkerLabel.HAS_GPU, WorkerLabel.HIGH_MEMORY})
    assert GoodAttributes.timeouts.execution == dt.timedelta(minutes=5)
    assert REGISTRY.get("good.attributes-1_x") is GoodAttributes


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


class Nested(BaseModel):
    a: int


@pytest.mark.parametrize("annotation", [list[float], dict[str, float], Nested, tuple[int, int]])
def test_non_scalar_input_field_is_rejected_with_not_indexed_hint(annotation: Any) -> None:
    class NonScalarInput(ExperimentInputSpec):
        samples: annotation  # type: ignore[valid-type]

    with pytest.raises(ExperimentDefinitionError) as info:

        class NonScalar(Experiment[NonScalarInput, Energy]):
            name = "non_scalar"

            def run(self, spec: NonScalarInput, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

    message = str(info.value)
    assert "NonScalarInput.samples" in message
    assert "not a scalar" in message
    assert "Annotated[..., NotIndexed]" in message
    assert "non_scalar" not in REGISTRY


def test_not_indexed_input_is_accepted_and_left_out_of_the_index() -> None:
    class ProfileInput(ExperimentInputSpec):
        radius: float
        profile: Annotated[list[float], NotIndexed] = Field(description="Hourly profile.")
        options: Annotated[dict[str, Any], NotIndexed] = Field(default_factory=dict)

    class NotIndexed(Experiment[ProfileInput, Energy]):
        name = "not_indexed"

        def run(self, spec: ProfileInput, ctx: LeafContext) -> Energy:
            return Energy(energy=sum(spec.profile))

    schema = NotIndexed.schema
    kinds = {plan.name: plan.kind for plan in schema.inputs}
    assert kinds == {
        "radius": FieldKind.SCALAR,
        "profile": FieldKind.NOT_INDEXED,
        "options": FieldKind.NOT_INDEXED,
    }
    assert schema.index_columns() == [
        "experiment_id",
        "sort_index",
        "root_workflow_run_id",
        "radius",
    ]


@pytest.mark.parametrize("clash", ["radius", "experiment_id", "sort_index"])
def test_output_field_reusing_an_index_name_is_rejected(clash: str) -> None:
    ClashOutput = type(
        "ClashOutput",
        (ExperimentOutputSpec,),
        {"__annotations__": {clash: float}, "__module__": __name__},
    )
    with pytest.raises(ExperimentDefinitionError) as info:

        class Clash(Experiment[Geometry, ClashOutput]):  # type: ignore[valid-type]
            name = "clash"

            def run(self, spec: Geometry, ctx: LeafContext) -> Any:
                return None

    message = str(info.value)
    assert "ClashOutput" in message and clash in message
    assert "clash" not in REGISTRY


@pytest.mark.parametrize(
    "annotation", [list[FileReference], Annotated[list[float], NotIndexed], list[float]]
)
def test_output_file_lists_and_non_scalars_are_rejected(annotation: Any) -> None:
    class ListOutput(ExperimentOutputSpec):
        maps: annotation  # type: ignore[valid-type]

    with pytest.raises(ExperimentDefinitionError) as info:

        class ListOut(Experiment[Geometry, ListOutput]):
            name = "list_out"

            def run(self, spec: Geometry, ctx: LeafContext) -> ListOutput:
                raise NotImplementedError

    assert "ListOutput.maps" in str(info.value)
    assert "list_out" not in REGISTRY


class Climate(enum.Enum):
    HOT = "hot"
    COLD = "cold"


class RichInput(ExperimentInputSpec):
    """Fields declared in a deliberately non-alphabetical order."""

    zeta: float
    alpha: int
    climate: Climate
    mode: Literal["a", "b"]
    weather: FileReference
    extra: OptionalFileReference = None
    samples: Annotated[list[float], NotIndexed] = Field(default_factory=list)
    label: str = "x"
    day: dt.date = dt.date(2025, 1, 1)


class RichOutput(ExperimentOutputSpec):
    total: float = Field(description="Total.")
    report: FileReference = Field(description="A report file.")
    note: str | None = None


def test_schema_classification_and_index_column_order() -> None:
    schema = ExperimentSchema.build(RichInput, RichOutput)
    assert [p.name for p in schema.inputs] == [
        "zeta",
        "alpha",
        "climate",
        "mode",
        "weather",
        "extra",
        "samples",
        "label",
        "day",
    ]
    assert [p.name for p in schema.file_inputs] == ["weather", "extra"]
    assert [p.name for p in schema.scalar_outputs] == ["total", "note"]
    assert [p.name for p in schema.file_outputs] == ["report"]
    assert schema.index_columns(["area", "volume"]) == [
        "experiment_id",
        "sort_index",
        "root_workflow_run_id",
        "zeta",
        "alpha",
        "climate",
        "mode",
        "weather",
        "extra",
        "label",
        "day",
        "area",
        "volume",
    ]
    optional = {p.name: p.optional for p in schema.inputs}
    assert optional["extra"] is True and optional["weather"] is False


def test_io_spec_documents_both_models_with_descriptions() -> None:
    class Documented(Experiment[Geometry, Energy]):
        name = "documented"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    spec = Documented.schema.io_spec()
    definitions = spec["$defs"]
    assert set(definitions) >= {"Geometry", "Energy"}
    geometry = definitions["Geometry"]["properties"]
    assert geometry["radius"]["description"] == "Sphere radius in metres."
    assert geometry["count"]["description"] == "How many spheres."
    assert definitions["Energy"]["properties"]["energy"]["description"] == (
        "Total energy in joules."
    )
    json.dumps(spec)  # must be plain data, since it is written as YAML


# --------------------------------------------------------------------------------------------
# FileReference
# --------------------------------------------------------------------------------------------

_REFERENCE = TypeAdapter(FileReference)


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        ("s3://bucket/path/weather.csv", AnyUrl),
        ("https://example.com/weather.csv", HttpUrl),
        ("http://example.com/weather.csv", HttpUrl),
        ("file:///tmp/weather.csv", FileUrl),
        ("weather/cold.csv", PurePath),
        ("/abs/weather.csv", PurePath),
    ],
)
def test_file_reference_routes_by_scheme_from_python_and_json(raw: str, kind: type) -> None:
    for value in (_REFERENCE.validate_python(raw), _REFERENCE.validate_json(json.dumps(raw))):
        assert isinstance(value, kind)
        if kind is PurePath:
            assert isinstance(value, Path) and value == Path(raw)
        else:
            assert not isinstance(value, Path)
            assert str(value) == raw


def test_s3_reference_is_a_url_not_a_path() -> None:
    value = _REFERENCE.validate_python("s3://bucket/key.txt")
    assert str(value) == "s3://bucket/key.txt"
    assert value.scheme == "s3"  # type: ignore[union-attr]
    assert value.host == "bucket"  # type: ignore[union-attr]


def test_path_object_stays_a_path() -> None:
    value = _REFERENCE.validate_python(Path("data/in.csv"))
    assert value == Path("data/in.csv")


@pytest.mark.parametrize("raw", ["ftp://example.com/a.csv", "s3://"])
def test_unsupported_or_malformed_reference_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        _REFERENCE.validate_python(raw)
    with pytest.raises(ValidationError):
        _REFERENCE.validate_json(json.dumps(raw))


def test_unsupported_scheme_is_named_in_the_error() -> None:
    with pytest.raises(ValidationError, match="ftp"):
        _REFERENCE.validate_python("ftp://example.com/a.csv")


def test_optional_and_list_file_references_in_a_model() -> None:
    class FilesInput(ExperimentInputSpec):
        main: FileReference
        maybe: OptionalFileReference = None
        many: list[FileReference] = Field(default_factory=list)

    spec = FilesInput.model_validate_json(
        json.dumps(
            {
                "main": "s3://bucket/a.csv",
                "many": ["https://example.com/b.csv", "local/c.csv", "file:///tmp/d.csv"],
            }
        )
    )
    assert isinstance(spec.main, AnyUrl) and str(spec.main) == "s3://bucket/a.csv"
    assert spec.maybe is None
    assert isinstance(spec.many[0], HttpUrl)
    assert spec.many[1] == Path("local/c.csv")
    assert isinstance(spec.many[2], FileUrl)

    explicit_none = FilesInput(main=Path("x.csv"), maybe=None)
    assert explicit_none.maybe is None and explicit_none.main == Path("x.csv")
    with pytest.raises(ValidationError):
        FilesInput(main=None)  # type: ignore[arg-type]

    # A spec round-trips through JSON (how it travels to workers) with each kind preserved.
    again = FilesInput.model_validate_json(spec.model_dump_json())
    assert again == spec

    schema = ExperimentSchema.build(FilesInput, Energy)
    kinds = {p.name: p.kind for p in schema.inputs}
    assert kinds == {"main": FieldKind.FILE, "maybe": FieldKind.FILE, "many": FieldKind.FILE_LIST}


# --------------------------------------------------------------------------------------------
# RecursionPolicy
# --------------------------------------------------------------------------------------------


def test_recursion_defaults() -> None:
    policy = RecursionPolicy()
    assert (policy.factor, policy.max_depth) == (10, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"factor": 0}, "factor must be a positive int"),
        ({"factor": -3}, "factor must be a positive int"),
        ({"factor": 2.5}, "factor must be a positive int"),
        ({"factor": True}, "factor must be a positive int"),
        ({"max_depth": -1}, "max_depth must be an int >= 0"),
        ({"max_depth": 1.0}, "max_depth must be an int >= 0"),
        ({"max_depth": False}, "max_depth must be an int >= 0"),
        ({"factor": 1, "max_depth": 1}, "factor must be >= 2 when max_depth > 0"),
    ],
)
def test_recursion_policy_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RecursionPolicy(**kwargs)  # type: ignore[arg-type]


def test_recursion_policy_factor_one_is_fine_without_depth() -> None:
    policy = RecursionPolicy(factor=1, max_depth=0)
    assert not policy.splits(0, 1000)


def test_recursion_policy_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        RecursionPolicy(4, 2)  # type: ignore[misc]
    policy = RecursionPolicy(factor=4, max_depth=2)
    with pytest.raises(AttributeError):
        policy.factor = 5  # type: ignore[misc]


def test_splits() -> None:
    policy = RecursionPolicy(factor=10, max_depth=2)
    assert policy.splits(0, 11)
    assert policy.splits(1, 1_000_000)
    assert not policy.splits(0, 10)  # a node with <= factor specs dispatches them itself
    assert not policy.splits(0, 1)
    assert not policy.splits(2, 1_000_000)  # max depth reached
    assert not RecursionPolicy(factor=10, max_depth=0).splits(0, 1_000_000)


@pytest.mark.parametrize(
    ("factor", "n_specs"),
    [(2, 1), (2, 2), (3, 10), (10, 3), (10, 10), (10, 23), (7, 100), (16, 1000), (5, 0)],
)
def test_children_are_grid_stride_and_balanced(factor: int, n_specs: int) -> None:
    policy = RecursionPolicy(factor=factor, max_depth=1)
    fan_out = policy.children(0, n_specs)
    assert fan_out == (factor if n_specs > factor else 0)
    sizes = child_sizes(n_specs, fan_out) if fan_out else []
    assert sum(sizes) == (n_specs if fan_out else 0)  # every spec goes to exactly one child
    assert all(sizes)  # empty children are dropped
    if sizes:
        assert max(sizes) - min(sizes) <= 1
        assert sizes == [len(range(i, n_specs, fan_out)) for i in range(fan_out)]


def test_fan_out_is_the_seam_for_custom_shapes() -> None:
    @attrs.frozen(kw_only=True)
    class Chunks(RecursionPolicy):
        chunk: int = 100

        def fan_out(self, depth: int, n_specs: int) -> int:
            return -(-n_specs // self.chunk) if depth == 0 else 0

    policy = Chunks(chunk=100)
    assert policy.children(0, 1_000) == 10
    assert policy.children(0, 50) == 0  # one chunk: no split
    assert policy.children(1, 1_000) == 0
    assert RecursionPolicy(factor=10, max_depth=1).children(0, 5) == 0


# --------------------------------------------------------------------------------------------
# Durations and Timeouts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30s", dt.timedelta(seconds=30)),
        ("5m", dt.timedelta(minutes=5)),
        ("2h", dt.timedelta(hours=2)),
        ("1d", dt.timedelta(days=1)),
        ("90", dt.timedelta(seconds=90)),
        ("1.5h", dt.timedelta(minutes=90)),
        (" 10 m ", dt.timedelta(minutes=10)),
        (90, dt.timedelta(seconds=90)),
        (0.5, dt.timedelta(milliseconds=500)),
        (dt.timedelta(minutes=3), dt.timedelta(minutes=3)),
    ],
)
def test_parse_duration(value: str | int | float | dt.timedelta, expected: dt.timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["5x", "abc", "", "m", "-5s", "5 minutes", "1h30m"])
def test_parse_duration_rejects_unknown_strings(value: str) -> None:
    with pytest.raises(ValueError, match="30s, 5m, 2h or 1d") as info:
        parse_duration(value)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize("value", [0, -1, -0.5, "0s", "0m", dt.timedelta(0), dt.timedelta(-1)])
def test_parse_duration_rejects_non_positive(value: str | int | float | dt.timedelta) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(value)


def test_parse_duration_rejects_bools() -> None:
    with pytest.raises(ValueError, match="bool"):
        parse_duration(True)


@pytest.mark.parametrize("value", ["99999999999d", float("inf"), 1e20])
def test_parse_duration_rejects_overflowing_values_with_value_error(
    value: str | float,
) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(seconds=90), "90s"),
        (dt.timedelta(minutes=5), "5m"),
        (dt.timedelta(hours=2), "2h"),
        (dt.timedelta(minutes=90), "90m"),
    ],
)
def test_compact_durations_parse(value: dt.timedelta, text: str) -> None:
    assert parse_duration(text) == value


def test_timeouts_convert_and_default_to_none() -> None:
    timeouts = Timeouts(execution="5m", schedule=90)
    assert timeouts.execution == dt.timedelta(minutes=5)
    assert timeouts.schedule == dt.timedelta(seconds=90)
    assert Timeouts() == Timeouts(execution=None, schedule=None)
    assert Timeouts().execution is None and Timeouts().schedule is None
    assert Timeouts(schedule=dt.timedelta(hours=1)).schedule == dt.timedelta(hours=1)


def test_timeouts_reject_bad_durations() -> None:
    with pytest.raises(ValueError, match="not understood"):
        Timeouts(execution="soon")
    with pytest.raises(ValueError, match="must be positive"):
        Timeouts(schedule=0)
    with pytest.raises(TypeError):
        Timeouts("5m")  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------


def test_settings_defaults(clean_env: pytest.MonkeyPatch) -> None:
    settings = Settings.from_env()
    assert settings.storage_bucket is None
    assert settings.storage_bucket_prefix == "scythe"
    assert settings.local_root == Path("scythe-data")
    assert settings.timeout_scatter_gather_schedule == dt.timedelta(minutes=100)
    assert settings.timeout_scatter_gather_execution == dt.timedelta(minutes=200)
    assert settings.timeout_experiment_schedule == dt.timedelta(minutes=10)
    assert settings.timeout_experiment_execution == dt.timedelta(minutes=60)


def test_settings_read_the_environment(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "my-bucket")
    clean_env.setenv("SCYTHE_STORAGE_BUCKET_PREFIX", "team/sweeps")
    clean_env.setenv("SCYTHE_LOCAL_ROOT", str(tmp_path / "runs"))
    clean_env.setenv("SCYTHE_TIMEOUT_SCATTER_GATHER_SCHEDULE", "3h")
    clean_env.setenv("SCYTHE_TIMEOUT_SCATTER_GATHER_EXECUTION", "1d")
    clean_env.setenv("SCYTHE_TIMEOUT_EXPERIMENT_SCHEDULE", "45s")
    clean_env.setenv("SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION", "120")
    settings = Settings.from_env()
    assert settings.storage_bucket == "my-bucket"
    assert settings.storage_bucket_prefix == "team/sweeps"
    assert settings.local_root == tmp_path / "runs"
    assert settings.timeout_scatter_gather_schedule == dt.timedelta(hours=3)
    assert settings.timeout_scatter_gather_execution == dt.timedelta(days=1)
    assert settings.timeout_experiment_schedule == dt.timedelta(seconds=45)
    assert settings.timeout_experiment_execution == dt.timedelta(minutes=2)


def test_settings_empty_bucket_means_no_bucket(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "")
    assert Settings.from_env().storage_bucket is None


def test_settings_are_read_when_asked_not_cached(clean_env: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().storage_bucket is None
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "later-bucket")
    assert Settings.from_env().storage_bucket == "later-bucket"


@pytest.mark.parametrize(
    "variable",
    [
        "SCYTHE_TIMEOUT_SCATTER_GATHER_SCHEDULE",
        "SCYTHE_TIMEOUT_SCATTER_GATHER_EXECUTION",
        "SCYTHE_TIMEOUT_EXPERIMENT_SCHEDULE",
        "SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION",
    ],
)
@pytest.mark.parametrize("bad", ["forever", "0s", "-5m"])
def test_bad_duration_names_the_variable(
    clean_env: pytest.MonkeyPatch, variable: str, bad: str
) -> None:
    clean_env.setenv(variable, bad)
    with pytest.raises(ValueError) as info:
        Settings.from_env()
    assert variable in str(info.value)
    assert repr(bad) in str(info.value)


def test_overflowing_duration_names_the_variable(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION", "99999999999d")
    with pytest.raises(ValueError, match="SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION"):
        Settings.from_env()


# --------------------------------------------------------------------------------------------
# Mistakes caught at definition time (issue 12, part 7) and names that would clash (part 1)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "meant"),
    [
        ("retry", "retries"),
        ("timeout", "timeouts"),
        ("desired_worker_labels", "worker_labels"),
        ("worker_label", "worker_labels"),
        ("version", "version_policy"),
        ("recursion_map", "recursion"),
        ("min_batch_second", "min_batch_seconds"),
    ],
)
def test_a_misspelled_setting_is_refused_with_a_suggestion(attribute: str, meant: str) -> None:
    with pytest.raises(ExperimentDefinitionError, match=f"did you mean `{meant}`") as info:
        define("Misspelled", Geometry, Energy, {attribute: 3})
    assert f"`{attribute}` is not a setting" in str(info.value)
    assert "misspelled" not in REGISTRY


def test_attributes_that_are_not_near_a_setting_are_fine() -> None:
    class Helpers(Experiment[Geometry, Energy]):
        weather_cache_size = 3
        reference_area = 12.5

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(heating=self.reference_area)

    assert REGISTRY.get("helpers") is Helpers


def test_an_experiment_without_type_parameters_is_refused() -> None:
    with pytest.raises(ExperimentDefinitionError, match=r"Experiment\[MyInput, MyOutput\]"):

        class Untyped(Experiment):  # type: ignore[type-arg]
            def run(self, spec: Any, ctx: LeafContext) -> Any:
                return None

    assert "untyped" not in REGISTRY


@pytest.mark.parametrize(
    ("hook", "source"),
    [
        ("setup", "def setup(self, ctx): ..."),
        ("teardown", "def teardown(self, reason): ..."),
        ("fetch_inputs", "def fetch_inputs(self, spec): ..."),
        ("fetch_inputs", "def fetch_inputs(self, spec, ctx, extra): ..."),
        ("publish_outputs", "def publish_outputs(self, output, ctx, *, where): ..."),
    ],
)
def test_hooks_with_the_wrong_signature_are_refused(hook: str, source: str) -> None:
    namespace: dict[str, Any] = {}
    exec(source, namespace)
    with pytest.raises(ExperimentDefinitionError, match=f"{hook}.* has the wrong signature"):
        define("BadHook", Geometry, Energy, {hook: namespace[hook]})


def test_hooks_with_optional_extras_are_fine() -> None:
    class Optional_(Experiment[Geometry, Energy]):
        name = "optional_hooks"

        def setup(self, verbose: bool = False) -> None: ...

        def fetch_inputs(self, spec: Geometry, ctx: LeafContext, lazy: bool = True) -> Geometry:
            return spec

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(heating=1.0)

    assert REGISTRY.get("optional_hooks") is Optional_


def define(
    name: str, input_type: type, output_type: type, body: dict[str, Any] | None = None
) -> Any:
    """``class <name>(Experiment[input_type, output_type])`` with ``body``, built at run time."""

    def fill(namespace: dict[str, Any]) -> None:
        namespace["run"] = lambda self, spec, ctx: None
        namespace["__module__"] = __name__
        namespace.update(body or {})

    return types.new_class(name, (Experiment[input_type, output_type],), exec_body=fill)  # type: ignore[valid-type]


@contextlib.contextmanager
def REGISTRY_SNAPSHOT() -> Iterator[None]:
    """Hypothesis reruns a test body many times inside one test: forget each run's classes."""
    saved = dict(REGISTRY._by_name)
    try:
        yield
    finally:
        REGISTRY._by_name.clear()
        REGISTRY._by_name.update(saved)


BOOKKEEPING_NAMES = (
    "experiment_id",
    "sort_index",
    "root_workflow_run_id",
    "error_type",
    "error_message",
    "traceback",
    "attempts",
    "worker",
    "wall_time",
    "log_tail",
    "ok",
    "peak_rss_mib",
    "finished_at",
)
NAMES = st.sampled_from(["area", "depth", "mode", "heating", *BOOKKEEPING_NAMES[3:]])


@settings(max_examples=60, deadline=None)
@given(
    inputs=st.lists(NAMES, max_size=3, unique=True),
    computed=st.lists(NAMES, max_size=2, unique=True),
    outputs=st.lists(NAMES, min_size=1, max_size=3, unique=True),
)
def test_names_that_would_clash_are_refused_naming_both_sides(
    inputs: list[str], computed: list[str], outputs: list[str]
) -> None:
    """A class is accepted exactly when every column of every table has one meaning."""
    assume(not set(inputs) & set(computed))  # pydantic itself refuses that one
    namespace: dict[str, Any] = {"__annotations__": {n: float for n in inputs}}
    for name in computed:
        namespace[name] = computed_field(property(lambda self: 1.0), return_type=float)  # type: ignore[prop-decorator]
    input_type = type("GenInput", (ExperimentInputSpec,), namespace)
    output_type = type(
        "GenOutput", (ExperimentOutputSpec,), {"__annotations__": dict.fromkeys(outputs, float)}
    )
    levels = [*inputs, *computed]
    added = set(BOOKKEEPING_NAMES[3:])
    clash = (
        len(set(levels)) < len(levels)
        or bool(set(levels) & added)
        or bool(set(outputs) & set(levels))
    )
    with REGISTRY_SNAPSHOT():
        if clash:
            with pytest.raises(ExperimentDefinitionError, match="clashes with") as info:
                define("Generated", input_type, output_type)
            message = str(info.value)
            assert message.count("'") >= 2 and "rename" in message
        else:
            cls = define("Generated", input_type, output_type)
            assert cls.schema.index_columns(computed)[3:] == levels


@pytest.mark.parametrize("reserved", ["experiment_id", "sort_index", "root_workflow_run_id"])
def test_outputs_may_not_reuse_index_names(reserved: str) -> None:
    output_type = type("Out", (ExperimentOutputSpec,), {"__annotations__": {reserved: float}})
    with pytest.raises(ExperimentDefinitionError, match="an index level of every results table"):
        define("Reuses", Geometry, output_type)
