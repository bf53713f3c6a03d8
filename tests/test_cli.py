"""The scythe-oo command, end to end in subprocesses, on a local folder and on S3 (moto)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from scythe_oo import ArtifactStore, ExperimentRun, LocalStore, S3Store
from scythe_oo.cli import cli, main
from scythe_oo.driver.locate import parse_run
from scythe_oo.runfolder.versions import SemVer
from tests.support.cli import cli_env, scythe, scythe_popen
from tests.support.daily import DailyInput

pytestmark = pytest.mark.timeout(600)

EXPERIMENT = "tests.support.daily:Daily"


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, ArtifactStore]:
    """A real store and how --store names it: a folder, or s3://bucket/prefix on moto."""
    if request.param == "local":
        return str(tmp_path / "store"), LocalStore(root=tmp_path / "store")
    s3: S3Store = request.getfixturevalue("s3_store")
    return f"s3://{s3.bucket}/{s3.prefix}", s3


def write_specs(path: Path, rows: list[DailyInput]) -> Path:
    frame = pd.DataFrame(
        [row.model_dump(exclude=set(DailyInput.BOOKKEEPING_FIELDS)) for row in rows]
    )
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return path


def daily_rows(n: int, flag: Path, *, failing: bool = True) -> list[DailyInput]:
    """``n`` specs; with ``failing``, every third one fails until ``flag`` exists."""
    return [
        DailyInput(i=i, x=1 + i / 10, fails=failing and i % 3 == 0, fixed_flag=str(flag))
        for i in range(n)
    ]


def every_key(store: ArtifactStore) -> set[str]:
    return set(store.list_keys("daily"))


def test_the_daily_loop_from_a_shell(tmp_path: Path, store: tuple[str, ArtifactStore]) -> None:
    where, real = store
    flag = tmp_path / "fixed"
    specs = write_specs(tmp_path / "specs.csv", daily_rows(6, flag))

    allocated = scythe("allocate", EXPERIMENT, str(specs), "--store", where, "--json", cwd=tmp_path)
    assert allocated.code == 1, allocated.err  # some leaves failed
    first = allocated.json()
    assert (first["status"], first["succeeded"], first["failed"]) == (
        "completed_with_failures",
        4,
        2,
    )
    assert "daily v1.0.0: completed_with_failures, 4 done, 2 failed of 6" in allocated.err

    listed = scythe("runs", "--store", where, cwd=tmp_path)
    assert listed.code == 0
    header, row = listed.out.splitlines()
    assert header.split() == [
        "EXPERIMENT",
        "VERSION",
        "RUN",
        "STATUS",
        "DONE",
        "FAILED",
        "TOTAL",
        "DURATION",
    ]
    assert row.split()[:7] == [
        "daily",
        "v1.0.0",
        row.split()[2],
        "completed_with_failures",
        "4",
        "2",
        "6",
    ]
    assert [
        r["uri"] for r in scythe("runs", "daily", "--store", where, "--json", cwd=tmp_path).json()
    ] == [first["uri"]]

    status = scythe("status", "daily", "--store", where, cwd=tmp_path)
    assert status.code == 0
    assert "leaves     6/6: 4 done, 2 failed" in status.out and first["uri"] in status.out
    assert (
        scythe("status", first["uri"], "--json", cwd=tmp_path).json()["status"]
        == "completed_with_failures"
    )

    shown = scythe("results", "daily@v1.0.0", "--store", where, "--json", cwd=tmp_path).json()
    squares = {row["i"]: row["square"] for row in shown["scalars"]}
    assert squares == {i: pytest.approx(i * (1 + i / 10) ** 2) for i in (1, 2, 4, 5)}
    text = scythe("results", "daily", "--store", where, "--table", "pairs", cwd=tmp_path)
    assert text.out.startswith("pairs: 8 rows")

    out = tmp_path / "out"
    written = scythe(
        "results", "daily", "--store", where, "--to", str(out), "--format", "csv", cwd=tmp_path
    )
    assert written.code == 0
    assert {Path(p).name for p in written.out.split()} >= {
        "scalars.csv",
        "failures.csv",
        "pairs.csv",
    }
    assert sorted(pd.read_csv(out / "scalars.csv")["i"]) == [1, 2, 4, 5]
    scythe(
        "results", "daily", "--store", where, "--to", str(out), "--table", "scalars", cwd=tmp_path
    )
    assert len(pd.read_parquet(out / "scalars.pq")) == 4

    grouped = scythe(
        "failures", "daily", "--store", where, "--group-by", "error", "--json", cwd=tmp_path
    ).json()
    assert [(g["error_type"], g["count"], g["sort_indexes"]) for g in grouped] == [
        ("RuntimeError", 2, [0, 3])
    ]
    listed_failures = scythe("failures", "daily", "--store", where, "--json", cwd=tmp_path).json()
    assert "leaf 3 says line 1" in listed_failures[1]["log_tail"]

    logged = scythe("logs", "daily", "0", "--store", where, cwd=tmp_path)
    assert logged.code == 0 and "leaf 0 says line 1" in logged.out
    lines = scythe("logs", "daily", "0", "--store", where, "--json", cwd=tmp_path).json()["lines"]
    assert lines[0].startswith("--- attempt 1") and lines[-1].endswith("leaf 0 says line 1")

    before = every_key(real)
    failed = scythe("replay", "daily", "0", "--store", where, "--json", cwd=tmp_path)
    assert failed.code == 1
    assert (failed.json()["ok"], failed.json()["error_type"]) == (False, "RuntimeError")
    assert "leaf 0 says line 0" in failed.err  # ctx.log lines print as they come
    good = scythe(
        "replay",
        "daily",
        "4",
        "--store",
        where,
        "--scratch",
        str(tmp_path / "s"),
        "--json",
        cwd=tmp_path,
    )
    assert good.code == 0 and good.json()["scalars"]["square"] == pytest.approx(4 * 1.4**2)
    assert Path(good.json()["tables"]["pairs"]).is_relative_to(tmp_path / "s")
    assert every_key(real) == before  # replays write nothing into the run

    flag.write_text("fixed")
    retried = scythe("retry", "daily", "--store", where, "--json", cwd=tmp_path)
    assert retried.code == 0, retried.err
    assert (retried.json()["status"], retried.json()["succeeded"]) == ("completed", 6)
    assert "daily v1.0.0: completed, 6 done, 0 failed of 6" in retried.err
    assert (
        len(scythe("results", "daily", "--store", where, "--json", cwd=tmp_path).json()["scalars"])
        == 6
    )

    report = scythe(
        "report", "daily", "--store", where, "-o", str(tmp_path / "r.html"), cwd=tmp_path
    )
    assert report.code == 0 and (tmp_path / "r.html").read_text().lower().startswith(
        "<!doctype html>"
    )


def test_sample_estimate_then_allocate_the_sample(
    tmp_path: Path, store: tuple[str, ArtifactStore]
) -> None:
    where, _ = store
    sampled = scythe(
        "sample", EXPERIMENT, "8", "-o", "specs.pq", "--method", "sobol", "--seed", "3",
        "--fixed", "fails=false", "--fixed", '{"lines": 1}', "--ranges", "x=1,2",
        "--ranges", "i=0,9", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert sampled.code == 0, sampled.err
    assert sampled.json()["n"] == 8
    frame = pd.read_parquet(tmp_path / "specs.pq")
    assert frame["x"].between(1, 2).all() and frame["i"].between(0, 9).all()

    estimated = scythe(
        "estimate", EXPERIMENT, "specs.pq", "--pilot", "3", "--pilot-workers", "1",
        "--workers", "4", "--cost-per-core-hour", "0.5", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert estimated.code == 0, estimated.err
    found = estimated.json()
    assert (found["pilot"], found["n_specs"], found["workers"], found["failed"]) == (3, 8, 4, 0)
    assert found["cost"] == pytest.approx(found["core_hours"] * 0.5)
    assert (
        "Pilot estimate for daily"
        in scythe("estimate", EXPERIMENT, "specs.pq", "--pilot", "2", cwd=tmp_path).out
    )

    allocated = scythe(
        "allocate", "daily", "specs.pq", "--module", "tests.support.daily", "--store", where,
        "--version", "v2.0.0", "--json", cwd=tmp_path,
    )  # fmt: skip
    assert allocated.code == 0, allocated.err
    run = ExperimentRun.open(allocated.json()["uri"])
    assert str(run.version) == "v2.0.0"
    design = run.manifest().design
    assert design is not None and (design["method"], design["seed"], design["n"]) == ("sobol", 3, 8)


@pytest.mark.parametrize("suffix", [".jsonl", ".pq"])
def test_allocate_reads_json_lines_and_parquet_specs(tmp_path: Path, suffix: str) -> None:
    specs = write_specs(
        tmp_path / f"specs{suffix}", daily_rows(4, tmp_path / "fixed", failing=False)
    )
    done = scythe("allocate", EXPERIMENT, str(specs), "--store", "store", cwd=tmp_path)
    assert done.code == 0, done.err
    uri = done.out.splitlines()[0]
    assert uri.startswith("file://") and done.out.splitlines()[-1] == f"completed: {uri}"
    assert len(ExperimentRun.open(uri).results.scalars()) == 4


def test_resume_continues_a_run_whose_shell_was_killed(
    tmp_path: Path, store: tuple[str, ArtifactStore]
) -> None:
    where, _ = store
    gate = tmp_path / "gate"
    rows = [DailyInput(i=i, gate=str(gate) if i >= 2 else "", lines=1) for i in range(5)]
    specs = write_specs(tmp_path / "specs.csv", rows)
    driver = scythe_popen(
        "allocate",
        EXPERIMENT,
        str(specs),
        "--store",
        where,
        cwd=tmp_path,
        SCYTHE_JOURNAL_SECONDS="0",
    )
    try:
        assert driver.stdout is not None
        uri = driver.stdout.readline().strip()
        run = ExperimentRun.open(uri)
        deadline = time.monotonic() + 120
        while not all("says line 0" in run.logs(i) for i in (2, 3)):
            assert time.monotonic() < deadline, "leaves 2 and 3 never started"
            time.sleep(0.05)  # 0 and 1 ended; 2 and 3 wait at the gate, 4 for a worker
    finally:
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    watched = scythe("status", uri, "--json", cwd=tmp_path)
    assert watched.json()["status"] == "interrupted"
    gate.write_text("open")
    resumed = scythe("resume", uri, "--json", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert (resumed.json()["status"], resumed.json()["succeeded"]) == ("completed", 5)
    assert [a["reason"] for a in resumed.json()["attempts"]] == ["resume"]


WATCHED = """
import sys
from scythe_oo import LocalEngine, LocalStore
from tests.support.daily import Daily, DailyInput

gate = sys.argv[2]
specs = [DailyInput(i=i, gate=gate if i >= 3 else "", lines=0) for i in range(6)]
run = Daily.allocate(specs, store=LocalStore(root=sys.argv[1]), engine=LocalEngine(max_workers=2))
print(run.uri, flush=True)
run.wait(progress=False)
"""


def test_status_watch_follows_a_run_another_process_drives(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    driver = subprocess.Popen(
        [sys.executable, "-c", WATCHED, str(tmp_path / "store"), str(gate)],
        stdout=subprocess.PIPE,
        text=True,
        env=cli_env(SCYTHE_JOURNAL_SECONDS="0"),
    )
    watcher = None
    try:
        assert driver.stdout is not None
        uri = driver.stdout.readline().strip()
        watcher = scythe_popen("status", uri, "--watch", cwd=tmp_path)
        assert watcher.stderr is not None
        while "running, 3/6 (50%), 3 done" not in (line := watcher.stderr.readline()):
            assert line, "the watcher ended before it saw the journaled leaves"
        gate.write_text("open")
        out, err = watcher.communicate(timeout=120)
        assert watcher.returncode == 0, err
        assert "status     completed" in out
        assert "daily v1.0.0: completed, 6 done, 0 failed of 6" in err
    finally:
        for process in (driver, watcher):
            if process is not None:
                process.kill()
                process.wait(timeout=30)


def one_line_error(result_err: str) -> str:
    lines = result_err.strip().splitlines()
    assert len(lines) == 1, result_err
    assert "Traceback" not in result_err
    return lines[0]


def test_user_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    cases = {
        ("rnus",): "No such command 'rnus'",
        ("list", "experimentz"): "no module named 'experimentz'",
        ("allocate", "nowhere:Thing", "specs.csv"): "does not exist",
        ("status", "daily", "--store", "empty"): "no runs of 'daily'",
        ("status", "not a run"): "is not a run",
        ("worker", "tests.support.daily"): "scripts/hatchet-local",
        ("logs", "daily@v1.0.0"): "Missing argument 'SORT_INDEX'",
    }
    env = {"HATCHET_CLIENT_TOKEN": ""}
    for args, expected in cases.items():
        result = scythe(*args, cwd=tmp_path, **env)
        assert result.code == 2, (args, result)
        assert expected in one_line_error(result.err), (args, result.err)
    specs = write_specs(tmp_path / "specs.csv", daily_rows(2, tmp_path / "f"))
    typo = scythe("allocate", "tests.support.dialy:Daily", str(specs), cwd=tmp_path)
    assert typo.code == 2 and "no module named 'tests.support.dialy'" in one_line_error(typo.err)
    bad = specs.read_text().replace("1.1", "-5", 1)
    (tmp_path / "bad.csv").write_text(bad)
    invalid = scythe("allocate", EXPERIMENT, "bad.csv", "--store", "s", cwd=tmp_path)
    assert invalid.code == 2
    assert "spec #1: field 'x'" in one_line_error(invalid.err) and "row" in invalid.err
    debugged = scythe("status", "daily", "--store", "empty", "--debug", cwd=tmp_path)
    assert debugged.code == 2 and "Traceback" in debugged.err


def test_every_command_has_help_with_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    names = sorted(cli.commands)
    assert set(names) >= {
        "runs", "status", "results", "failures", "logs", "retry", "resume", "allocate",
        "replay", "worker", "list", "sample", "estimate", "report",
    }  # fmt: skip
    for name in names:
        assert main([name, "--help"]) == 0
        shown = capsys.readouterr().out
        assert re.search(r"Example:\n +scythe-oo ", shown), name
        assert "--json" in shown or name == "worker", name
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip().startswith("scythe-oo ")


def test_python_dash_m_scythe_oo_is_the_command(tmp_path: Path) -> None:
    shown = scythe("--help", cwd=tmp_path)
    assert shown.code == 0 and "Commands:" in shown.out and "allocate" in shown.out
    listed = scythe("list", "tests.support.daily", "--json", cwd=tmp_path)
    assert listed.json() == [{"name": "daily", "class": "tests.support.daily.Daily"}]


NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
VERSIONS = st.builds(SemVer, st.integers(0, 999), st.integers(0, 999), st.integers(0, 999))


@given(name=NAMES, version=st.none() | VERSIONS)
def test_run_names_and_versions_read_back(name: str, version: SemVer | None) -> None:
    text = name if version is None else f"{name}@{version}"
    found = parse_run(text)
    assert (found.kind, found.experiment, found.version) == ("name", name, version)


@given(name=NAMES, version=VERSIONS, second=st.integers(0, 59), same=st.integers(2, 99) | st.none())
def test_run_ids_and_uris_read_back(
    name: str, version: SemVer, second: int, same: int | None
) -> None:
    stamp = f"2026-01-02_03-04-{second:02d}" + ("" if same is None else f"-{same}")
    run_id = f"{name}/{version}/{stamp}"
    found = parse_run(run_id)
    assert (found.kind, found.experiment) == ("id", name)
    assert parse_run(f"s3://bucket/prefix/{run_id}").kind == "uri"
    with pytest.raises(ValueError, match="not a run"):
        parse_run(f"{name}@{version}@{version}")
