"""Class creation: registration, generic parameters, settings and schema checks, FileReference.

Experiment names are global in the process-wide registry, so every class here carries a name
with a ``tdef_`` prefix that no other test module uses.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from pathlib import Path, PurePath
from typing import Annotated, Any, Generic, Literal, Optional, TypeVar

import pytest
from pydantic import AnyUrl, BaseModel, Field, FileUrl, HttpUrl, TypeAdapter, ValidationError

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
from scythe_oo.experiment import snake_case
from scythe_oo.schema import ExperimentSchema, FieldKind


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
    class TdefSimulateEnergy(Experiment[Geometry, Energy]):
        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=spec.radius)

    assert TdefSimulateEnergy.name == "tdef_simulate_energy"
    assert "tdef_simulate_energy" in REGISTRY
    assert REGISTRY.get("tdef_simulate_energy") is TdefSimulateEnergy
    assert TdefSimulateEnergy.abstract is False
    assert TdefSimulateEnergy.schema.input_type is Geometry
    assert TdefSimulateEnergy.schema.output_type is Energy


def test_explicit_name_overrides_the_default() -> None:
    class TdefNamedExperiment(Experiment[Geometry, Energy]):
        name = "tdef_custom"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    assert TdefNamedExperiment.name == "tdef_custom"
    assert REGISTRY.get("tdef_custom") is TdefNamedExperiment
    assert "tdef_named_experiment" not in REGISTRY


def test_unknown_name_suggests_a_close_match() -> None:
    class TdefLookupTarget(Experiment[Geometry, Energy]):
        name = "tdef_lookup_target"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    with pytest.raises(UnknownExperimentError) as info:
        REGISTRY.get("tdef_lookup_trget")
    assert isinstance(info.value, KeyError)
    message = str(info.value)
    assert "'tdef_lookup_trget'" in message
    assert "Did you mean" in message and "'tdef_lookup_target'" in message

    with pytest.raises(KeyError) as far:  # catchable as a plain KeyError too
        REGISTRY.get("zzzz_nothing_like_this_qqqq")
    assert "Did you mean" not in str(far.value)


def test_duplicate_name_from_another_class_names_both_locations() -> None:
    def first() -> type:
        class TdefDupFirst(Experiment[Geometry, Energy]):
            name = "tdef_duplicate"

            def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

        return TdefDupFirst

    original = first()
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefDupSecond(Experiment[Geometry, Energy]):
            name = "tdef_duplicate"

            def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
                return Energy(energy=2.0)

    message = str(info.value)
    assert _location(original) in message
    assert "test_duplicate_name_from_another_class_names_both_locations.<locals>.TdefDupSecond" in (
        message
    )
    assert "'tdef_duplicate'" in message
    assert REGISTRY.get("tdef_duplicate") is original  # the first one keeps the name


def _build_redefinable(energy: float) -> type:
    class TdefRedefined(Experiment[Geometry, Energy]):
        name = "tdef_redefined"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=energy)

    return TdefRedefined


def test_redefining_the_same_qualname_replaces_the_class() -> None:
    old = _build_redefinable(1.0)
    new = _build_redefinable(2.0)  # same module.qualname, like a re-run notebook cell
    assert old is not new
    assert _location(old) == _location(new)
    assert REGISTRY.get("tdef_redefined") is new


# --------------------------------------------------------------------------------------------
# Generic parameters and run()
# --------------------------------------------------------------------------------------------


def test_non_spec_input_type_is_rejected_naming_the_class() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefIntInput(Experiment[int, Energy]):  # type: ignore[type-var]
            name = "tdef_int_input"

            def run(self, spec: Any, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

    message = str(info.value)
    assert "TdefIntInput" in message
    assert "int" in message and "ExperimentInputSpec" in message
    assert "tdef_int_input" not in REGISTRY


def test_swapped_type_parameters_are_rejected() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefSwapped(Experiment[Energy, Geometry]):  # type: ignore[type-var]
            name = "tdef_swapped"

            def run(self, spec: Any, ctx: LeafContext) -> Any:
                return None

    message = str(info.value)
    assert "TdefSwapped" in message
    assert "Energy" in message and "ExperimentInputSpec" in message
    assert "tdef_swapped" not in REGISTRY


def test_non_spec_output_type_is_rejected() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefStrOutput(Experiment[Geometry, str]):  # type: ignore[type-var]
            name = "tdef_str_output"

            def run(self, spec: Geometry, ctx: LeafContext) -> str:
                return ""

    assert "TdefStrOutput" in str(info.value)
    assert "ExperimentOutputSpec" in str(info.value)


@pytest.mark.parametrize("bad", [list[Geometry], Optional[Geometry]])  # noqa: UP045
def test_non_class_type_argument_is_rejected(bad: Any) -> None:
    with pytest.raises(ExperimentDefinitionError, match="TdefNonClassArg"):

        class TdefNonClassArg(Experiment[bad, Energy]):  # type: ignore[valid-type]
            name = "tdef_non_class_arg"

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

        class TdefBadSignature(Experiment[Geometry, Energy]):
            name = "tdef_bad_signature"
            run = namespace["run"]

    message = str(info.value)
    assert "TdefBadSignature" in message
    assert "wrong signature" in message
    assert "def run(self, spec: Geometry, ctx: LeafContext) -> Energy" in message
    assert "tdef_bad_signature" not in REGISTRY


def test_run_with_extra_optional_parameter_is_accepted() -> None:
    class TdefOptionalExtra(Experiment[Geometry, Energy]):
        name = "tdef_optional_extra"

        def run(self, spec: Geometry, ctx: LeafContext, scale: float = 1.0) -> Energy:
            return Energy(energy=spec.radius * scale)

    assert REGISTRY.get("tdef_optional_extra") is TdefOptionalExtra


def test_class_without_run_is_rejected() -> None:
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefNoRun(Experiment[Geometry, Energy]):
            name = "tdef_no_run"

    message = str(info.value)
    assert "TdefNoRun" in message
    assert "def run(self, spec, ctx)" in message
    assert "tdef_no_run" not in REGISTRY


# --------------------------------------------------------------------------------------------
# Bases, abstract classes, inheritance
# --------------------------------------------------------------------------------------------

InT = TypeVar("InT", bound=ExperimentInputSpec)
OutT = TypeVar("OutT", bound=ExperimentOutputSpec)


class TdefGenericBase(Experiment[InT, OutT], Generic[InT, OutT]):
    """A reusable base: still generic, so never registered."""

    name = "tdef_generic_base"
    retries = 2

    def run(self, spec: InT, ctx: LeafContext) -> OutT:
        raise NotImplementedError


def test_generic_intermediate_base_is_not_registered() -> None:
    assert "tdef_generic_base" not in REGISTRY
    assert TdefGenericBase.__scythe_generic__ == (InT, OutT)  # type: ignore[attr-defined]


def test_concrete_child_of_generic_base_is_registered_with_its_types() -> None:
    class TdefGenericChild(TdefGenericBase[Geometry, Energy]):
        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=spec.radius)

    assert TdefGenericChild.name == "tdef_generic_child"  # not the base's explicit name
    assert REGISTRY.get("tdef_generic_child") is TdefGenericChild
    assert TdefGenericChild.schema.input_type is Geometry
    assert TdefGenericChild.schema.output_type is Energy
    assert TdefGenericChild.retries == 2  # settings are inherited


def test_abstract_true_prevents_registration_but_children_register() -> None:
    class TdefAbstractBase(Experiment[Geometry, Energy]):
        name = "tdef_abstract_base"
        abstract = True

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    assert "tdef_abstract_base" not in REGISTRY

    class TdefAbstractChild(TdefAbstractBase):
        name = "tdef_abstract_child"

    assert REGISTRY.get("tdef_abstract_child") is TdefAbstractChild
    assert TdefAbstractChild.abstract is False
    assert TdefAbstractChild.schema.input_type is Geometry


def test_subclass_of_concrete_experiment_inherits_types() -> None:
    class TdefParent(Experiment[Geometry, Energy]):
        name = "tdef_parent"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    class TdefParentVariant(TdefParent):
        name = "tdef_parent_variant"
        retries = 3

    assert REGISTRY.get("tdef_parent") is TdefParent
    assert REGISTRY.get("tdef_parent_variant") is TdefParentVariant
    assert TdefParentVariant.schema.input_type is Geometry
    assert TdefParentVariant.schema.output_type is Energy
    assert TdefParent.retries == 0


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
    body: dict[str, Any] = {"name": "tdef_bad_attribute", attribute: value}
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefBadAttribute(Experiment[Geometry, Energy]):
            locals().update(body)

            def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

    message = str(info.value)
    assert "TdefBadAttribute" in message
    assert attribute in message
    assert "tdef_bad_attribute" not in REGISTRY


def test_valid_class_attributes_are_accepted_and_normalised() -> None:
    class TdefGoodAttributes(Experiment[Geometry, Energy]):
        name = "tdef.good-attributes_1"
        worker_labels = {"has_gpu", WorkerLabel.HIGH_MEMORY}  # type: ignore[assignment]
        retries = 2
        timeouts = Timeouts(execution="5m")
        recursion = RecursionPolicy(factor=4, max_depth=2)
        version_policy = "bumppatch"
        min_batch_seconds = 0

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    assert TdefGoodAttributes.worker_labels == frozenset(
        {WorkerLabel.HAS_GPU, WorkerLabel.HIGH_MEMORY}
    )
    assert TdefGoodAttributes.timeouts.execution == dt.timedelta(minutes=5)
    assert REGISTRY.get("tdef.good-attributes_1") is TdefGoodAttributes


# --------------------------------------------------------------------------------------------
# Schema
# --------------------------------------------------------------------------------------------


class Nested(BaseModel):
    a: int


@pytest.mark.parametrize("annotation", [list[float], dict[str, float], Nested, tuple[int, int]])
def test_non_scalar_input_field_is_rejected_with_not_indexed_hint(annotation: Any) -> None:
    class TdefNonScalarInput(ExperimentInputSpec):
        samples: annotation  # type: ignore[valid-type]

    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefNonScalar(Experiment[TdefNonScalarInput, Energy]):
            name = "tdef_non_scalar"

            def run(self, spec: TdefNonScalarInput, ctx: LeafContext) -> Energy:
                return Energy(energy=1.0)

    message = str(info.value)
    assert "TdefNonScalarInput.samples" in message
    assert "not a scalar" in message
    assert "Annotated[..., NotIndexed]" in message
    assert "tdef_non_scalar" not in REGISTRY


def test_not_indexed_input_is_accepted_and_left_out_of_the_index() -> None:
    class TdefProfileInput(ExperimentInputSpec):
        radius: float
        profile: Annotated[list[float], NotIndexed] = Field(description="Hourly profile.")
        options: Annotated[dict[str, Any], NotIndexed] = Field(default_factory=dict)

    class TdefNotIndexed(Experiment[TdefProfileInput, Energy]):
        name = "tdef_not_indexed"

        def run(self, spec: TdefProfileInput, ctx: LeafContext) -> Energy:
            return Energy(energy=sum(spec.profile))

    schema = TdefNotIndexed.schema
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
    TdefClashOutput = type(
        "TdefClashOutput",
        (ExperimentOutputSpec,),
        {"__annotations__": {clash: float}, "__module__": __name__},
    )
    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefClash(Experiment[Geometry, TdefClashOutput]):  # type: ignore[valid-type]
            name = "tdef_clash"

            def run(self, spec: Geometry, ctx: LeafContext) -> Any:
                return None

    message = str(info.value)
    assert "TdefClashOutput" in message and clash in message
    assert "tdef_clash" not in REGISTRY


@pytest.mark.parametrize(
    "annotation", [list[FileReference], Annotated[list[float], NotIndexed], list[float]]
)
def test_output_file_lists_and_non_scalars_are_rejected(annotation: Any) -> None:
    class TdefListOutput(ExperimentOutputSpec):
        maps: annotation  # type: ignore[valid-type]

    with pytest.raises(ExperimentDefinitionError) as info:

        class TdefListOut(Experiment[Geometry, TdefListOutput]):
            name = "tdef_list_out"

            def run(self, spec: Geometry, ctx: LeafContext) -> TdefListOutput:
                raise NotImplementedError

    assert "TdefListOutput.maps" in str(info.value)
    assert "tdef_list_out" not in REGISTRY


class Climate(enum.Enum):
    HOT = "hot"
    COLD = "cold"


class TdefRichInput(ExperimentInputSpec):
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


class TdefRichOutput(ExperimentOutputSpec):
    total: float = Field(description="Total.")
    report: FileReference = Field(description="A report file.")
    note: str | None = None


def test_schema_classification_and_index_column_order() -> None:
    schema = ExperimentSchema.build(TdefRichInput, TdefRichOutput)
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
    class TdefDocumented(Experiment[Geometry, Energy]):
        name = "tdef_documented"

        def run(self, spec: Geometry, ctx: LeafContext) -> Energy:
            return Energy(energy=1.0)

    spec = TdefDocumented.schema.io_spec()
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
    class TdefFilesInput(ExperimentInputSpec):
        main: FileReference
        maybe: OptionalFileReference = None
        many: list[FileReference] = Field(default_factory=list)

    spec = TdefFilesInput.model_validate_json(
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

    explicit_none = TdefFilesInput(main=Path("x.csv"), maybe=None)
    assert explicit_none.maybe is None and explicit_none.main == Path("x.csv")
    with pytest.raises(ValidationError):
        TdefFilesInput(main=None)  # type: ignore[arg-type]

    # A spec round-trips through JSON (how it travels to workers) with each kind preserved.
    again = TdefFilesInput.model_validate_json(spec.model_dump_json())
    assert again == spec

    schema = ExperimentSchema.build(TdefFilesInput, Energy)
    kinds = {p.name: p.kind for p in schema.inputs}
    assert kinds == {"main": FieldKind.FILE, "maybe": FieldKind.FILE, "many": FieldKind.FILE_LIST}
