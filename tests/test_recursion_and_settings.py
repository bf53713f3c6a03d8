"""RecursionPolicy, durations and Timeouts, SCYTHE_* settings and store/engine resolution."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydantic import Field

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    LocalEngine,
    LocalStore,
    RecursionPolicy,
    Timeouts,
)
from scythe_oo.settings import Settings
from scythe_oo.store.s3 import S3Store
from scythe_oo.strategies import resolve_engine, resolve_recursion, resolve_store
from scythe_oo.timeouts import format_duration, parse_duration

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
def test_partition_is_grid_stride_and_balanced(factor: int, n_specs: int) -> None:
    children = RecursionPolicy(factor=factor, max_depth=1).partition(n_specs)
    assert len(children) == min(factor, n_specs)
    flat = [i for child in children for i in child]
    assert sorted(flat) == list(range(n_specs))  # every index exactly once
    assert len(flat) == len(set(flat))
    assert all(child for child in children)  # empty children are dropped
    if children:
        sizes = [len(child) for child in children]
        assert max(sizes) - min(sizes) <= 1
    for i, child in enumerate(children):
        assert child == list(range(i, n_specs, factor))


def test_partition_example() -> None:
    assert RecursionPolicy(factor=3, max_depth=1).partition(8) == [[0, 3, 6], [1, 4, 7], [2, 5]]


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
def test_format_duration_round_trips(value: dt.timedelta, text: str) -> None:
    assert format_duration(value) == text
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

SCYTHE_VARS = (
    "SCYTHE_STORAGE_BUCKET",
    "SCYTHE_STORAGE_BUCKET_PREFIX",
    "SCYTHE_LOCAL_ROOT",
    "SCYTHE_TIMEOUT_SCATTER_GATHER_SCHEDULE",
    "SCYTHE_TIMEOUT_SCATTER_GATHER_EXECUTION",
    "SCYTHE_TIMEOUT_EXPERIMENT_SCHEDULE",
    "SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in SCYTHE_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


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
# resolve_store / resolve_engine / resolve_recursion
# --------------------------------------------------------------------------------------------


class StrategyInput(ExperimentInputSpec):
    x: float = Field(description="A number.")


class StrategyOutput(ExperimentOutputSpec):
    y: float = Field(description="Another number.")


class TrsPlain(Experiment[StrategyInput, StrategyOutput]):
    name = "trs_plain"

    def run(self, spec: StrategyInput, ctx: LeafContext) -> StrategyOutput:
        return StrategyOutput(y=spec.x)


CLASS_STORE = LocalStore(root=Path("/tmp/trs-class-store"))
CLASS_ENGINE = LocalEngine(max_workers=3)


class TrsConfigured(Experiment[StrategyInput, StrategyOutput]):
    name = "trs_configured"
    store = CLASS_STORE
    engine = CLASS_ENGINE
    recursion = RecursionPolicy(factor=4, max_depth=2)

    def run(self, spec: StrategyInput, ctx: LeafContext) -> StrategyOutput:
        return StrategyOutput(y=spec.x)


def test_store_argument_beats_everything(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "env-bucket")
    argument = LocalStore(root=tmp_path / "arg")
    assert resolve_store(TrsConfigured, argument) is argument
    assert resolve_store(TrsPlain, argument) is argument


def test_class_store_beats_the_environment(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "env-bucket")
    assert resolve_store(TrsConfigured, None) is CLASS_STORE


def test_bucket_setting_gives_an_s3_store(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "env-bucket")
    clean_env.setenv("SCYTHE_LOCAL_ROOT", str(tmp_path / "ignored"))
    # Nothing listens here: building the store must not need a connection.
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = resolve_store(TrsPlain, None)
    assert isinstance(store, S3Store)
    assert store.bucket == "env-bucket"
    assert store.prefix == "scythe"
    assert store.uri("exp/v1.0.0/x") == "s3://env-bucket/scythe/exp/v1.0.0/x"
    assert store.describe() == {"kind": "s3", "bucket": "env-bucket", "prefix": "scythe"}
    assert not (tmp_path / "ignored").exists()


def test_bucket_prefix_setting_is_used(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("SCYTHE_STORAGE_BUCKET", "env-bucket")
    clean_env.setenv("SCYTHE_STORAGE_BUCKET_PREFIX", "/team/sweeps/")
    store = resolve_store(TrsPlain, None)
    assert isinstance(store, S3Store)
    assert store.prefix == "team/sweeps"
    assert store.uri("a.txt") == "s3://env-bucket/team/sweeps/a.txt"


def test_local_root_setting_gives_a_local_store(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("SCYTHE_LOCAL_ROOT", str(tmp_path / "runs"))
    store = resolve_store(TrsPlain, None)
    assert isinstance(store, LocalStore)
    assert store.root == (tmp_path / "runs").resolve()
    assert not store.root.exists()  # resolving a store writes nothing


def test_default_store_is_scythe_data_in_the_working_directory(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.chdir(tmp_path)
    store = resolve_store(TrsPlain, None)
    assert isinstance(store, LocalStore)
    assert store.root == tmp_path.resolve() / "scythe-data"
    assert not store.root.exists()


def test_engine_resolution() -> None:
    default = resolve_engine(TrsPlain, None)
    assert isinstance(default, LocalEngine)
    assert default.max_workers is None
    assert resolve_engine(TrsConfigured, None) is CLASS_ENGINE
    argument = LocalEngine(max_workers=1)
    assert resolve_engine(TrsConfigured, argument) is argument
    assert resolve_engine(TrsPlain, argument) is argument


def test_recursion_resolution() -> None:
    assert resolve_recursion(TrsPlain, None) == RecursionPolicy()
    assert resolve_recursion(TrsConfigured, None) == RecursionPolicy(factor=4, max_depth=2)
    argument = RecursionPolicy(factor=2, max_depth=5)
    assert resolve_recursion(TrsConfigured, argument) is argument
    with pytest.raises(TypeError, match="RecursionPolicy"):
        resolve_recursion(TrsPlain, {"factor": 2})  # type: ignore[arg-type]
