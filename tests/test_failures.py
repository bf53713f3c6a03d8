"""Bad input, secrets and outages: nothing is lost, nothing leaks, errors say what to fix."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from pydantic import Field

from examples.building_energy.experiment import SimulateEnergy
from examples.building_energy.sample import sample
from scythe_oo import (
    REGISTRY,
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    FileReference,
    HatchetEngine,
    LeafContext,
    LocalEngine,
    LocalStore,
    S3Store,
    SpecValidationError,
    UnknownExperimentError,
)
from tests.support.invariants import account_for_everything
from tests.support.s3 import MotoServer
from tests.support.tcp_proxy import ProxyProcess

pytestmark = pytest.mark.timeout(180)


class SafetyInput(ExperimentInputSpec):
    mode: str
    data: FileReference | None = None


class SafetyOutput(ExperimentOutputSpec):
    value: float = Field(ge=0)
    report: FileReference | None = None


class Misbehaving(Experiment[SafetyInput, SafetyOutput]):
    """Each mode breaks one rule."""

    name = "safety_misbehaving"

    def run(self, spec: SafetyInput, ctx: LeafContext) -> SafetyOutput:
        if spec.mode == "reserved-table":
            return SafetyOutput(value=1, dataframes={"scalars": pd.DataFrame({"a": [1]})})
        if spec.mode == "outside-workdir":
            outside = Path(ctx.workdir).parent / f"escape-{ctx.sort_index}.txt"
            outside.write_text("nope")
            return SafetyOutput(value=1, report=outside)
        if spec.mode == "dotdot":
            return SafetyOutput(value=1, report=ctx.workdir / ".." / "x.txt")
        if spec.mode == "reads-data":
            assert spec.data is not None
            report = ctx.workdir / "odd name (copy).txt"
            report.write_text(Path(spec.data).read_text())
            return SafetyOutput(value=2, report=report)
        return SafetyOutput(value=0)


def test_rule_breaking_outputs_become_clear_failure_rows(tmp_path: Path) -> None:
    modes = ["ok", "reserved-table", "outside-workdir", "dotdot"]
    run = Misbehaving.allocate(
        [SafetyInput(mode=m) for m in modes], store=LocalStore(root=tmp_path)
    ).wait(timeout=60)
    assert run.status == "completed_with_failures"
    failures = run.failures().reset_index().set_index("mode")
    account_for_everything(run, len(modes))
    assert "reserved" in failures.loc["reserved-table", "error_message"]
    assert "'scalars'" in failures.loc["reserved-table", "error_message"]
    for mode in ("outside-workdir", "dotdot"):
        message = failures.loc[mode, "error_message"]
        assert "outside the leaf's workdir" in message and "report" in message
    assert run.results.scalars().index.get_level_values("mode").tolist() == ["ok"]
    assert not list((tmp_path / Misbehaving.name).rglob("escape-*"))


def test_odd_file_names_are_normalised(tmp_path: Path) -> None:
    odd = tmp_path / "my weather (v2) ü.csv"
    odd.write_text("payload")
    store = LocalStore(root=tmp_path / "store")
    run = Misbehaving.allocate([SafetyInput(mode="reads-data", data=odd)], store=store).wait(
        timeout=60
    )
    assert run.status == "completed"
    (uri,) = run.results.scalars().index.get_level_values("data")
    assert uri.endswith("/artifacts/data/my_weather_v2_.csv")
    report = run.results.file_refs()["report"].iloc[0]
    assert report.endswith("/results/report/000000000.txt")
    for path in (store.root / run.layout.root).rglob("*"):
        assert all(c.isascii() and c not in " ()" for c in path.name), path


def test_secrets_never_reach_the_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "sentinel-token-8c1f0e"
    secret = "sentinel-secret-77a2b9"
    monkeypatch.setenv("HATCHET_CLIENT_TOKEN", token)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = LocalStore(root=tmp_path / "store")
    modes = ["ok", "reserved-table"]
    run = Misbehaving.allocate([SafetyInput(mode=m) for m in modes], store=store).wait(timeout=60)
    assert run.status == "completed_with_failures"
    files = [p for p in (store.root / run.layout.root).rglob("*") if p.is_file()]
    assert files
    for path in files:
        blob = path.read_bytes()
        assert token.encode() not in blob and secret.encode() not in blob, path
    assert token not in str(HatchetEngine().describe())


def test_unknown_experiment_at_a_worker_names_the_fix() -> None:
    with pytest.raises(UnknownExperimentError) as info:
        REGISTRY.get("safety_misbehavin")
    message = str(info.value)
    assert "safety_misbehaving" in message  # close match suggested
    assert "scythe-oo worker" in message  # how to make a worker know it


def test_store_outage_mid_run_is_ridden_out(
    moto_server: MotoServer, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = ProxyProcess(moto_server.port)
    proxy.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    store = S3Store(bucket=s3_bucket, prefix="outage")
    specs = sample(240, seed=5)
    run = SimulateEnergy.allocate(specs, store=store, engine=LocalEngine(max_workers=2))

    errors: list[BaseException] = []

    def outage() -> None:
        try:
            time.sleep(0.8)
            assert run.handle is not None and not run.handle.join(0), "run ended too early"
            proxy.stop()
            time.sleep(3.0)
            proxy.start()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        run.wait(timeout=150)
        thread.join()
        assert not errors
        assert run.status == "completed", run.progress()
        account_for_everything(run, 240)
        scalars = run.results.scalars()
        assert sorted(scalars.index.get_level_values("sort_index")) == list(range(240))
        assert run.failures().empty
    finally:
        thread.join()
        proxy.stop()


class SecretInput(ExperimentInputSpec):
    weather: FileReference | None = None
    echo: str = ""


class SecretOutput(ExperimentOutputSpec):
    value: float


class LeaksSecrets(Experiment[SecretInput, SecretOutput]):
    """Its input lives in S3 behind an endpoint that does not answer; a spec can also make
    run() print a secret into its error message."""

    name = "safety_leaks_secrets"

    def run(self, spec: SecretInput, ctx: LeafContext) -> SecretOutput:
        if spec.echo:
            raise RuntimeError(f"the simulation printed {os.environ[spec.echo]} in its error")
        raise AssertionError("the input cannot be fetched, so run is never reached")


def every_string_in(path: Path) -> bytes:
    """The file's bytes, and for Parquet every value decoded too: compressed columns would
    hide a secret from a plain byte search."""
    blob = path.read_bytes()
    if path.suffix == ".pq":
        table = pd.read_parquet(path).reset_index()
        blob += table.to_csv().encode()
        blob += json.dumps(
            {
                k.decode(errors="replace"): v.decode(errors="replace")
                for k, v in (pq.read_schema(path).metadata or {}).items()
            }
        ).encode()
    return blob


def test_credentials_in_urls_and_settings_never_reach_any_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12, part 5: the endpoint's password, the AWS key, secret and session token and the
    Hatchet token are masked in every message the framework writes: failures.pq, the leaf
    journal and the manifest, searched byte by byte (Parquet decoded)."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: every request fails with a connection error
    secrets = {
        "password": "hunter2-endpoint-pw",
        "key": "AKIASENTINELKEY12345",
        "secret": "sentinel-secret-77a2b9c4",
        "session": "sentinel-session-token-5e1d",
        "hatchet": "sentinel-hatchet-token-8c1f0e",
    }
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://scythe:{secrets['password']}@127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", secrets["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secrets["secret"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", secrets["session"])
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("HATCHET_CLIENT_TOKEN", secrets["hatchet"])
    monkeypatch.setenv("SCYTHE_JOURNAL_SECONDS", "0")  # journal every outcome
    monkeypatch.setenv("SCYTHE_CACHE_DIR", str(tmp_path / "cache"))
    store = LocalStore(root=tmp_path / "store")
    url = f"https://scythe:{secrets['password']}@127.0.0.1:{port}/w.csv"
    with pytest.raises(SpecValidationError, match="the URL carries a password"):
        LeaksSecrets.allocate([SecretInput(weather=url)], store=store)  # type: ignore[arg-type]
    specs = [
        SecretInput(weather="s3://bucket/weather.csv"),  # type: ignore[arg-type]
        SecretInput(echo="AWS_SECRET_ACCESS_KEY"),
        SecretInput(echo="HATCHET_CLIENT_TOKEN"),
    ]
    run = LeaksSecrets.allocate(specs, store=store, engine=LocalEngine(max_workers=1))
    run.wait(timeout=120)
    failures = run.failures()
    assert failures["error_type"].tolist() == ["StoreError", "RuntimeError", "RuntimeError"]
    assert "scythe:***@" in failures["error_message"].iloc[0]  # the message still helps
    assert "printed *** in its error" in failures["error_message"].iloc[1]
    files = [p for p in (store.root / run.layout.root).rglob("*") if p.is_file()]
    assert any("journal" in str(p) for p in files) and any(p.suffix == ".pq" for p in files)
    for path in files:
        blob = every_string_in(path)
        for name, value in secrets.items():
            assert value.encode() not in blob, f"the {name} leaked into {path}"
