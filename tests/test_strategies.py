"""Strategies are real seams: a custom ResultCollector and RecursionPolicy reach every node of
the tree on both engines, are recorded in the manifest, and are refused before anything is
written when workers could not import them; and one resolver picks each strategy (argument >
class attribute > settings > default)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import attrs
import pandas as pd
import pyarrow as pa
import pytest
from pydantic import Field

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample
from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    ExperimentRun,
    HatchetEngine,
    LeafContext,
    LocalEngine,
    LocalStore,
    RecursionPolicy,
    ResultCollector,
    S3Store,
)
from scythe_oo.definition.errors import StrategyError
from scythe_oo.driver.resolve import resolve_engine, resolve_recursion, resolve_store
from tests.support.hatchet import WorkerProcess
from tests.support.invariants import account_for_everything
from tests.support.strategies import (
    Chunked,
    NeverSplit,
    Pair,
    PairInput,
    PairWithMean,
    WholeMerge,
    WithMean,
)
from tests.test_example import comparable

StartWorker = Callable[..., WorkerProcess]


def pairs(n: int, failing: tuple[int, ...] = ()) -> list[PairInput]:
    return [PairInput(a=i, b=i + 1, fail=i in failing) for i in range(n)]


def node_inputs(store: LocalStore, run_root: str) -> list[str]:
    prefix = f"{run_root}/scatter-gather/input/"
    return sorted(key[len(prefix) :] for key in store.list_keys(prefix.rstrip("/")))


def test_collector_argument_shapes_the_final_tables(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run = Pair.allocate(
        pairs(12, failing=(3,)),
        store=store,
        engine=LocalEngine(max_workers=2, split_above=0),
        recursion=RecursionPolicy(factor=3, max_depth=2),
        collector=WithMean(divisor=2.0),
    ).wait(timeout=120)

    scalars = run.results.scalars()
    assert list(scalars.columns) == ["total", "product", "mean"]
    assert (scalars["mean"] == scalars["total"] / 2.0).all()
    account_for_everything(run, 12)
    recorded = run.manifest().collector
    assert recorded == {
        "type": "tests.support.strategies:WithMean",
        "merge_rows": 65_536,
        "divisor": 2.0,
    }


def test_collector_class_attribute_is_used_and_survives_retry(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    engine = LocalEngine(max_workers=2, split_above=0)
    run = PairWithMean.allocate(pairs(9, failing=(4,)), store=store, engine=engine)
    run.wait(timeout=120)
    assert run.status == "completed_with_failures"
    assert "mean" in run.results.scalars().columns

    # The retried run rebuilds its collector from the manifest, not from the class.
    retried = run.retry_failed(engine=engine).wait(timeout=120)
    scalars = retried.results.scalars()
    assert (scalars["mean"] == scalars["total"] / 4.0).all()
    assert len(scalars) == 8  # spec 4 still fails: the flag is part of its spec


def test_a_gathered_root_writes_the_tables_one_node_would(tmp_path: Path) -> None:
    """The root merges its children straight into final/ (outputs first, index levels last,
    pandas metadata; result_file_refs and a user dataframe too). A collector with a combine
    of its own, which knows nothing of final/'s layout, still gets its tables copied there.
    Either way final/ holds what a run that never split writes."""
    specs = sample(30, seed=5)
    store = LocalStore(tmp_path)
    tree = RecursionPolicy(factor=4, max_depth=2)
    engine = LocalEngine(max_workers=2, split_above=0)
    whole = SimulateEnergy.allocate(specs, store=store, engine=LocalEngine(max_workers=2))
    merged = SimulateEnergy.allocate(specs, store=store, engine=engine, recursion=tree)
    own = SimulateEnergy.allocate(
        specs, store=store, engine=engine, recursion=tree, collector=WholeMerge()
    )
    for run in (whole, merged, own):
        run.wait(timeout=120)
        account_for_everything(run, 30)

    names = whole.results.list()
    assert {"scalars", "failures", "result_file_refs", "monthly"} <= set(names)
    for run in (merged, own):
        assert run.results.list() == names
        for name in names:
            got, want = (comparable(r.results.dataframe(name)) for r in (run, whole))
            if name == "leaf_stats":  # times differ from run to run; the layout may not
                assert list(got.index) == list(want.index)
                got, want = got.iloc[:0], want.iloc[:0]
            pd.testing.assert_frame_equal(got, want)

    def root_tables(run: ExperimentRun) -> list[str]:
        folder = run.layout.node_output_prefix("root")
        return sorted(
            key.rsplit("/", 1)[1]
            for key in store.list_keys(folder)
            if key.rsplit("/", 1)[0] == folder and key.endswith(".pq")
        )

    assert root_tables(merged) == []  # merged into final/ once, never copied
    assert "scalars.pq" in root_tables(own)  # its own merge, then finalize_run's copy


def test_an_output_without_file_fields_keeps_no_file_refs_at_any_node(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    engine = LocalEngine(max_workers=2, split_above=0)
    run = Pair.allocate(pairs(12), store=store, engine=engine, recursion=Chunked(chunk=4))
    run.wait(timeout=120)

    account_for_everything(run, 12)
    tables = [key.rsplit("/", 1)[1] for key in store.list_keys(run.layout.root)]
    assert tables.count("scalars.pq") == 4  # three children's and final/'s
    assert "result_file_refs.pq" not in tables


def test_custom_recursion_shapes_the_tree(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run = Pair.allocate(
        pairs(23),
        store=store,
        engine=LocalEngine(max_workers=2, split_above=0),
        recursion=Chunked(chunk=5),
    ).wait(timeout=120)

    assert node_inputs(store, run.layout.root) == [f"root/{i}.pq" for i in range(math.ceil(23 / 5))]
    account_for_everything(run, 23)
    assert run.manifest().recursion["type"] == "tests.support.strategies:Chunked"


def test_a_policy_that_never_splits_writes_no_tree(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    run = Pair.allocate(
        pairs(30),
        store=store,
        engine=LocalEngine(max_workers=2, split_above=0),
        recursion=NeverSplit(factor=3, max_depth=3),
    ).wait(timeout=120)

    assert node_inputs(store, run.layout.root) == []
    account_for_everything(run, 30)


def test_a_strategy_workers_cannot_import_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    @attrs.frozen(kw_only=True)
    class Local(ResultCollector):
        def leaf_table(self, name: str, table: pa.Table) -> pa.Table:
            return table

    store = LocalStore(tmp_path)
    with pytest.raises(StrategyError, match=r"cannot be carried to workers.*function body"):
        Pair.allocate(pairs(3), store=store, engine=HatchetEngine(), collector=Local())
    assert list(store.list_keys("")) == []

    # The local engine runs every node in this process, so the same collector is fine there.
    run = Pair.allocate(pairs(3), store=store, engine=LocalEngine(max_workers=1), collector=Local())
    assert run.wait(timeout=60).status == "completed"


def test_a_strategy_that_is_not_an_attrs_class_is_refused(tmp_path: Path) -> None:
    class Plain(RecursionPolicy):  # a subclass without @attrs.frozen is still attrs
        pass

    with pytest.raises(StrategyError, match="recursion must be a RecursionPolicy"):
        Pair.allocate(pairs(3), store=LocalStore(tmp_path), recursion=object())  # type: ignore[arg-type]
    assert isinstance(Plain(), RecursionPolicy)


@pytest.mark.hatchet
@pytest.mark.timeout(300)
def test_custom_strategies_reach_every_node_on_hatchet(
    start_worker: StartWorker, tmp_path: Path
) -> None:
    start_worker("strategies", modules=("tests.support.strategies",))
    store = LocalStore(tmp_path)
    run = Pair.allocate(
        pairs(14, failing=(6,)),
        store=store,
        engine=HatchetEngine(split_above=0),
        recursion=Chunked(chunk=4),
        collector=WithMean(divisor=8.0),
    ).wait(timeout=240)

    assert run.status == "completed_with_failures"
    scalars = run.results.scalars()
    assert (scalars["mean"] == scalars["total"] / 8.0).all()
    assert node_inputs(store, run.layout.root) == [f"root/{i}.pq" for i in range(4)]
    account_for_everything(run, 14)


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
