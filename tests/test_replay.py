"""A leaf can be run in the researcher's own process: a run's spec again (run.replay), or a
spec in hand (MyExperiment.debug), through the same hooks, under a real debugger, with its
outputs kept out of the run."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pexpect
import pytest

from scythe_oo import LocalEngine, LocalStore
from tests.support.cli import ROOT, cli_env
from tests.support.daily import Daily, DailyInput, specs

pytestmark = pytest.mark.timeout(240)


def test_replay_runs_a_leaf_here_and_writes_nothing_into_the_run(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    store = LocalStore(root=tmp_path / "store")
    run = Daily.allocate(specs(5, fails_every_third=True), store=store, engine=LocalEngine())
    run.wait(timeout=120, progress=False)
    before = set(store.list_keys("daily"))
    results = run.results.scalars().reset_index().set_index("sort_index")

    failed = run.replay(3)
    assert (failed.ok, failed.error_type) == (False, "RuntimeError")
    assert "leaf 3 fails on purpose" in (failed.error_message or "")
    assert "Traceback" in (failed.traceback or "") and "leaf 3 says line 1" in failed.log
    assert "leaf 3 says line 0" in capfd.readouterr().err  # ctx.log lines show as they come

    good = run.replay(4, scratch=tmp_path / "scratch")
    assert good.ok and good.scalars["square"] == results.loc[4, "square"]
    assert good.folder == (tmp_path / "scratch").resolve()
    assert good.tables["pairs"].is_relative_to(good.folder)
    assert list(good.table("pairs")["value"]) == [1.4, 2.8]
    assert "ok in" in str(good) and "square=" in str(good)
    assert set(store.list_keys("daily")) == before  # nothing reached the run folder
    assert run.failures().reset_index()["sort_index"].tolist() == [0, 3]
    with pytest.raises(IndexError, match="numbered 0 to 4"):
        run.replay(5)


def test_debug_runs_a_spec_in_hand(tmp_path: Path) -> None:
    done = Daily.debug({"i": 2, "x": 3.0, "lines": 1}, scratch=str(tmp_path / "s"))
    assert done.ok and done.scalars == {"square": 18.0}
    assert "leaf 2 says line 0" in done.log
    assert done.table("pairs")["value"].tolist() == [3.0, 6.0]
    failed = Daily.debug(DailyInput(i=1, fails=True))
    assert not failed.ok and failed.error_type == "RuntimeError"
    with pytest.raises(ValueError, match="less than or equal to 100"):
        Daily.debug({"i": 1, "x": 1000.0})


BREAKPOINT_EXPERIMENT = textwrap.dedent(
    """
    from pydantic import Field
    from scythe_oo import Experiment, ExperimentInputSpec, ExperimentOutputSpec, Timeouts

    class StopInput(ExperimentInputSpec):
        i: int = Field(ge=0)

    class StopOutput(ExperimentOutputSpec):
        doubled: int

    class Stop(Experiment[StopInput, StopOutput]):
        timeouts = Timeouts(execution="1s")  # a breakpoint must not time out

        def run(self, spec, ctx):
            doubled = spec.i * 2
            breakpoint()
            return StopOutput(doubled=doubled)

    print(Stop.debug({"i": 7}))
    """
)


def test_a_breakpoint_in_run_stops_in_the_debugger(tmp_path: Path) -> None:
    script = tmp_path / "stop.py"
    script.write_text(BREAKPOINT_EXPERIMENT)
    child = pexpect.spawn(
        sys.executable, [str(script)], env=cli_env(), encoding="utf-8", timeout=120, cwd=tmp_path
    )
    try:
        child.expect(r"\(Pdb\) ")
        child.sendline("p doubled + 1000")
        child.expect("1014")
        child.sendline("!import time; time.sleep(1.5)")  # past the 1 s execution timeout
        child.expect(r"\(Pdb\) ")
        child.sendline("c")
        child.expect(r"stop spec #0: ok in .* doubled=14")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_cli_replay_pdb_opens_the_post_mortem_debugger(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    Daily.allocate(specs(4, fails_every_third=True), store=store, engine=LocalEngine()).wait(
        timeout=120, progress=False
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scythe_oo", "replay", "daily", "3", "--pdb", "--store", str(store.root)],
        env=cli_env(),
        encoding="utf-8",
        timeout=120,
        cwd=ROOT,
    )
    try:
        child.expect("RuntimeError: leaf 3 fails on purpose")
        child.expect(r"\(Pdb\) ")
        child.sendline("p (spec.i, spec.fails)")
        child.expect(r"\(3, True\)")
        child.sendline("q")
        child.expect(r"daily spec #3: RuntimeError: leaf 3 fails on purpose")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 1
