"""End-to-end runs on the embedded default: LocalEngine + LocalStore, real processes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Literal

import pandas as pd
import pytest
import yaml
from pydantic import Field, computed_field

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    ExperimentRun,
    FileReference,
    LeafContext,
    LocalEngine,
    LocalStore,
    OptionalFileReference,
    RecursionPolicy,
    Timeouts,
)
from tests.support.invariants import account_for_everything

pytestmark = pytest.mark.timeout(120)


class SweepInput(ExperimentInputSpec):
    """A tiny spec with every kind of field the index supports."""

    x: float = Field(description="A number [-]", ge=0)
    label: Literal["a", "b"] = "a"
    data: FileReference = Field(description="A text file")
    extra: OptionalFileReference = None
    probe_dir: str = Field(description="Where the test's probes write")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def x_squared(self) -> float:
        return self.x**2


class SweepOutput(ExperimentOutputSpec):
    doubled: float = Field(description="2x")
    length: int = Field(ge=0)
    report: FileReference


class Sweep(Experiment[SweepInput, SweepOutput]):
    """Writes probes so the test can see what ran where."""

    name = "test_sweep"
    recursion = RecursionPolicy(factor=3, max_depth=2)
    min_batch_seconds = 0.0

    def setup(self) -> None:
        self.pid = os.getpid()
        self.setups = getattr(self, "setups", 0) + 1

    def teardown(self) -> None:
        probe = Path(os.environ["SWEEP_PROBES"]) / f"teardown-{os.getpid()}"
        probe.write_text("done")

    def run(self, spec: SweepInput, ctx: LeafContext) -> SweepOutput:
        probes = Path(spec.probe_dir)
        (probes / f"leaf-{ctx.sort_index}").write_text(f"{os.getpid()} {ctx.workdir} {self.setups}")
        assert isinstance(spec.data, Path), "run must see a local Path"
        text = spec.data.read_text()
        if spec.x == 13:
            raise RuntimeError("thirteen is unlucky")
        if spec.x == 14:
            return SweepOutput(doubled=-1, length=-5, report=Path("missing"))
        report = ctx.workdir / "report.txt"
        report.write_text(f"{spec.x}:{text}")
        frame = pd.DataFrame({"t": [0, 1, 2], "y": [spec.x, spec.x + 1, spec.x + 2]}).set_index("t")
        return SweepOutput(
            doubled=2 * spec.x, length=len(text), report=report, dataframes={"curve": frame}
        )


class SweepOutputStrict(ExperimentOutputSpec):
    doubled: float = Field(ge=0)


class BadOutput(Experiment[SweepInput, SweepOutputStrict]):
    name = "test_bad_output"

    def run(self, spec: SweepInput, ctx: LeafContext) -> SweepOutputStrict:
        out = SweepOutputStrict(doubled=1.0)
        out.doubled = -3.0  # mutation after construction must still be caught
        return out


@pytest.fixture
def probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "probes"
    path.mkdir()
    monkeypatch.setenv("SWEEP_PROBES", str(path))
    return path


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(root=tmp_path / "store")


def make_specs(n: int, data: Path, probes: Path) -> list[SweepInput]:
    return [
        SweepInput(x=float(i), label="ab"[i % 2], data=data, probe_dir=str(probes))
        for i in range(n)
    ]


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    path = tmp_path / "inputs" / "data.txt"
    path.parent.mkdir()
    path.write_text("hello world")
    return path


@pytest.mark.parametrize("split_above", [0, LocalEngine().split_above], ids=["tree", "one-node"])
def test_full_run_tables(
    store: LocalStore, probes: Path, data_file: Path, split_above: int
) -> None:
    """The same tables whether the 20 specs run through a two-level tree of 3-way splits or,
    as LocalEngine does by default for a sweep this small, as a root that runs its leaves.
    Either way the root writes final/ itself and keeps no tables of its own."""
    specs = make_specs(20, data_file, probes)
    engine = LocalEngine(max_workers=2, split_above=split_above)
    run = Sweep.allocate(specs, store=store, engine=engine).wait(timeout=90)
    nodes = {p.name for p in (store.root / run.layout.node_output_prefix("root")).iterdir()}
    assert nodes == {"_node.json", *({"0", "1", "2"} if split_above == 0 else ())}

    assert run.status == "completed_with_failures"
    scalars = run.results.scalars()
    account_for_everything(run, 20)
    assert list(scalars.index.names) == [
        "experiment_id", "sort_index", "root_workflow_run_id",
        "x", "label", "data", "extra", "probe_dir", "x_squared",
    ]  # fmt: skip
    assert list(scalars.columns) == ["doubled", "length"]
    assert list(scalars.index.get_level_values("sort_index")) == [
        i for i in range(20) if i not in (13, 14)
    ]
    assert (
        scalars["doubled"].to_numpy() == 2 * scalars.index.get_level_values("x").to_numpy()
    ).all()
    assert set(scalars.index.get_level_values("experiment_id")) == {run.experiment_id}
    data_uris = set(scalars.index.get_level_values("data"))
    assert len(data_uris) == 1 and data_uris.pop().startswith(store.uri(run.layout.root))

    refs = run.results.file_refs()
    assert refs.index.equals(scalars.index)
    first = refs["report"].iloc[0]
    assert first.startswith("file://") and "/results/report/" in first
    assert Path(first.removeprefix("file://")).read_text() == "0.0:hello world"

    curve = run.results.dataframe("curve")
    assert list(curve.index.names)[-1] == "t"
    assert list(curve.index.names)[:-1] == list(scalars.index.names)
    assert len(curve) == 3 * len(scalars)

    failures = run.failures()
    assert list(failures.index.get_level_values("sort_index")) == [13, 14]
    assert failures["error_type"].tolist() == ["RuntimeError", "OutputValidationError"]
    assert "thirteen is unlucky" in failures["error_message"].iloc[0]
    assert "length" in failures["error_message"].iloc[1]  # names the bad field
    assert "Traceback" in failures["traceback"].iloc[0]

    # every spec accounted for exactly once
    seen = list(scalars.index.get_level_values("sort_index")) + list(
        failures.index.get_level_values("sort_index")
    )
    assert sorted(seen) == list(range(20))

    manifest = yaml.safe_load((store.root / run.layout.manifest).read_text())
    assert manifest["status"] == "completed_with_failures"
    assert manifest["counts"] == {"succeeded": 18, "failed": 2, "total": 20}
    assert sorted(run.results.list()) == [
        "curve",
        "failures",
        "leaf_stats",
        "result_file_refs",
        "scalars",
    ]


def test_hooks_workdir_and_teardown(store: LocalStore, probes: Path, data_file: Path) -> None:
    specs = make_specs(12, data_file, probes)
    Sweep.allocate(specs, store=store, engine=LocalEngine(max_workers=2)).wait(timeout=90)
    leaves = [p.read_text().split() for p in probes.glob("leaf-*")]
    assert len(leaves) == 12
    pids = {pid for pid, _, _ in leaves}
    assert len(pids) in (1, 2)
    assert os.getpid() not in {int(p) for p in pids}
    assert {setups for _, _, setups in leaves} == {"1"}  # setup ran once per process
    workdirs = [w for _, w, _ in leaves]
    assert len(set(workdirs)) == 12 and not any(Path(w).exists() for w in workdirs)
    assert {p.name for p in probes.glob("teardown-*")} == {f"teardown-{pid}" for pid in pids}


def test_bad_output_surfaces_with_field_name(
    store: LocalStore, probes: Path, data_file: Path
) -> None:
    run = BadOutput.allocate(make_specs(3, data_file, probes), store=store).wait(timeout=60)
    account_for_everything(run, 3)
    assert run.status == "completed_with_failures"
    failures = run.failures()
    assert len(failures) == 3 and set(failures["error_type"]) == {"OutputValidationError"}
    assert "doubled" in failures["error_message"].iloc[0]
    assert run.results.scalars().empty


def test_one_off_single_spec(store: LocalStore, probes: Path, data_file: Path) -> None:
    spec = make_specs(1, data_file, probes)[0]
    run = Sweep.allocate(spec, store=store).wait(timeout=60)
    assert run.manifest().one_off is True
    assert run.status == "completed"
    assert run.results.scalars()["doubled"].tolist() == [0.0]
    assert not list(store.list_keys(run.layout.key("scatter-gather", "input")))


def test_versions_listing_and_reopen(store: LocalStore, probes: Path, data_file: Path) -> None:
    specs = make_specs(2, data_file, probes)
    first = Sweep.allocate(specs, store=store).wait(timeout=60)
    second = Sweep.allocate(specs, store=store).wait(timeout=60)
    third = Sweep.allocate(specs, store=store, version="v3.1.4").wait(timeout=60)
    assert str(first.version) == "v1.0.0"
    assert str(second.version) == "v1.1.0"  # default policy bumpminor
    assert str(third.version) == "v3.1.4"
    (store.root / Sweep.name / "not-a-version").mkdir()
    (store.root / Sweep.name / "v1.0.0" / "scratch").mkdir()
    runs = Sweep.runs(store=store)
    assert [r.uri for r in runs] == [third.uri, second.uri, first.uri]
    assert Sweep.latest_run(store=store).uri == third.uri

    reopened = ExperimentRun.open(second.uri)
    assert reopened.status == "completed"
    pd.testing.assert_frame_equal(reopened.results.scalars(), second.results.scalars())


def test_download(store: LocalStore, probes: Path, data_file: Path, tmp_path: Path) -> None:
    run = Sweep.allocate(make_specs(3, data_file, probes), store=store).wait(timeout=60)
    dest = run.download(tmp_path / "copy")
    assert (dest / "final" / "scalars.pq").is_file()
    assert (dest / "manifest.yml").is_file()
    assert (dest / "specs.pq").is_file()
    assert not (dest / "scatter-gather").exists()  # per-node working files stay in the store
    pd.testing.assert_frame_equal(
        pd.read_parquet(dest / "final" / "scalars.pq"), run.results.scalars()
    )


def test_run_folder_files(store: LocalStore, probes: Path, data_file: Path) -> None:
    run = Sweep.allocate(make_specs(4, data_file, probes), store=store).wait(timeout=60)
    root = store.root / run.layout.root
    io_spec = yaml.safe_load((root / "experiment_io_spec.yml").read_text())
    assert io_spec["$defs"]["SweepInput"]["properties"]["x"]["description"] == "A number [-]"
    assert "SweepOutput" in io_spec["$defs"]
    artifacts = yaml.safe_load((root / "input_artifacts.yml").read_text())
    (entry,) = artifacts["files"]["data"]
    assert entry["uri"].endswith("/artifacts/data/data.txt") and len(entry["sha256"]) == 64
    assert (root / "artifacts" / "data" / "data.txt").read_text() == "hello world"
    specs = pd.read_parquet(root / "specs.pq")
    assert specs["sort_index"].tolist() == [0, 1, 2, 3]
    assert {p.name for p in (root / "final").iterdir()} >= {
        "scalars.pq",
        "failures.pq",
        "result_file_refs.pq",
        "leaf_stats.pq",
    }
    stats = run.results.dataframe("leaf_stats")
    assert stats.index.get_level_values("sort_index").tolist() == [0, 1, 2, 3]
    assert (stats["wall_time"] > 0).all() and (stats["peak_rss_mib"] > 0).all()
    assert stats["ok"].all() and (stats["attempts"] == 1).all()
    assert str(stats["finished_at"].dtype) == "datetime64[us, UTC]"
    assert not list(root.rglob("*.tmp"))


@pytest.mark.parametrize(("n", "children"), [(6, set()), (7, {"0", "1", "2"})])
def test_a_node_splits_only_above_split_above(
    store: LocalStore, probes: Path, data_file: Path, n: int, children: set[str]
) -> None:
    engine = LocalEngine(max_workers=2, split_above=6)
    run = Sweep.allocate(make_specs(n, data_file, probes), store=store, engine=engine)
    run.wait(timeout=60)
    account_for_everything(run, n)
    below_root = store.root / run.layout.node_output_prefix("root")
    assert {p.name for p in below_root.iterdir() if p.is_dir()} == children
    assert run.manifest().engine["split_above"] == "6"


def test_split_above_must_be_a_count() -> None:
    with pytest.raises(ValueError, match="split_above"):
        LocalEngine(split_above=-1)


class FlakyInput(ExperimentInputSpec):
    marker_dir: str
    i: int


class FlakyOutput(ExperimentOutputSpec):
    attempt: int


class Flaky(Experiment[FlakyInput, FlakyOutput]):
    """Fails the first attempt of every leaf; retries=1 must rescue every one."""

    name = "test_flaky"
    retries = 1

    def run(self, spec: FlakyInput, ctx: LeafContext) -> FlakyOutput:
        marker = Path(spec.marker_dir) / f"{spec.i}"
        if not marker.exists():
            marker.write_text("failed once")
            raise ConnectionError("transient")
        return FlakyOutput(attempt=ctx.attempt)


def test_retries_rescue_transient_failures(store: LocalStore, tmp_path: Path) -> None:
    specs = [FlakyInput(marker_dir=str(tmp_path), i=i) for i in range(5)]
    run = Flaky.allocate(specs, store=store).wait(timeout=60)
    assert run.status == "completed"
    assert run.results.scalars()["attempt"].tolist() == [2] * 5


class Sleepy(Experiment[FlakyInput, FlakyOutput]):
    name = "test_sleepy"
    timeouts = Timeouts(execution="1s")

    def run(self, spec: FlakyInput, ctx: LeafContext) -> FlakyOutput:
        if spec.i == 1:
            time.sleep(30)
        return FlakyOutput(attempt=ctx.attempt)


def test_execution_timeout_becomes_a_failure(store: LocalStore, tmp_path: Path) -> None:
    specs = [FlakyInput(marker_dir=str(tmp_path), i=i) for i in range(3)]
    started = time.monotonic()
    run = Sleepy.allocate(specs, store=store).wait(timeout=60)
    assert time.monotonic() - started < 25
    failures = run.failures()
    assert failures.index.get_level_values("sort_index").tolist() == [1]
    assert failures["error_type"].tolist() == ["LeafTimeoutError"]
    assert len(run.results.scalars()) == 2


def test_experiment_defined_in_a_function_runs(store: LocalStore, tmp_path: Path) -> None:
    class LocalOnly(Experiment[FlakyInput, FlakyOutput]):
        name = "test_defined_in_function"

        def run(self, spec: FlakyInput, ctx: LeafContext) -> FlakyOutput:
            return FlakyOutput(attempt=spec.i)

    specs = [FlakyInput(marker_dir=str(tmp_path), i=i) for i in range(4)]
    run = LocalOnly.allocate(specs, store=store).wait(timeout=60)
    assert run.results.scalars()["attempt"].tolist() == [0, 1, 2, 3]


def test_default_store_is_scythe_data_in_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SCYTHE_STORAGE_BUCKET", raising=False)
    monkeypatch.delenv("SCYTHE_LOCAL_ROOT", raising=False)
    run = Flaky.allocate(
        [FlakyInput(marker_dir=str(tmp_path), i=0)] * 0
        or [FlakyInput(marker_dir=str(tmp_path), i=7)]
    )
    run.wait(timeout=60)
    assert run.uri.startswith((tmp_path / "scythe-data").resolve().as_uri())


class GatedInput(ExperimentInputSpec):
    gate: str


class GatedOutput(ExperimentOutputSpec):
    waited: float


class Gated(Experiment[GatedInput, GatedOutput]):
    """Each leaf waits for its gate file, so a test acts while the run is surely unfinished."""

    name = "tlocal_gated"

    def run(self, spec: GatedInput, ctx: LeafContext) -> GatedOutput:
        started = time.monotonic()
        while not Path(spec.gate).exists():
            if time.monotonic() - started > 60:
                raise TimeoutError("the test never opened the gate")
            time.sleep(0.01)
        return GatedOutput(waited=time.monotonic() - started)


def test_a_finishing_run_sweeps_what_an_interrupted_writer_left_in_its_folder(
    tmp_path: Path,
) -> None:
    store = LocalStore(root=tmp_path / "store")
    gate = tmp_path / "gate"
    run = Gated.allocate(
        [GatedInput(gate=str(gate)) for _ in range(2)],
        store=store,
        engine=LocalEngine(max_workers=1),
    )
    folder = store.path_of(run.layout.root)
    stale = folder / "final" / ".scalars.pq.abc123.tmp"  # a killed attempt's staged table
    fresh = folder / "logs" / ".leaf.log.def456.tmp"  # a writer that may still be at work
    for path in (stale, fresh):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half a file")
    os.utime(stale, (1, 1))
    gate.touch()
    run.wait(timeout=60, progress=False)
    assert run.status == "completed"
    assert not stale.exists() and fresh.exists()
    assert len(run.results.scalars()) == 2
