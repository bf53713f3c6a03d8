"""Progress shows wherever the researcher is: plain lines through a pipe, a bar in a real
terminal, a widget (or plain lines) in a real notebook; with figures from the run's own start
time, and a summary line at the end."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import nbformat
import pexpect
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nbclient import NotebookClient

from scythe_oo.driver.progress import Figures, duration, elapsed_seconds
from scythe_oo.driver.watch import LONGEST_POLL_SECONDS, POLL_SHARE, Watch
from scythe_oo.engine.protocol import Progress
from scythe_oo.runfolder.manifest import Counts, Manifest

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent

DRIVER = textwrap.dedent(
    """
    import sys
    from scythe_oo import LocalEngine, LocalStore
    from tests.support.daily import Daily, specs

    store = LocalStore(root=sys.argv[1])
    run = Daily.allocate(specs(6, gate=sys.argv[2], lines=0), store=store,
                         engine=LocalEngine(max_workers=2))
    run.wait()
    print("RESULT", run.status, flush=True)
    """
)


def driver_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def manifest(status: str = "running", **fields: Any) -> Manifest:
    base = Manifest(
        experiment_name="daily",
        experiment_class="tests.support.daily:Daily",
        version="v1.0.0",
        workflow_run_id="x",
        engine={"kind": "local"},
        store={"kind": "local"},
        recursion={},
        n_specs=100,
        status=status,  # type: ignore[arg-type]
    )
    return base.evolve(**fields)


@given(
    waited=st.floats(0, 1e6),
    more=st.floats(0, 1e4),
    shortest=st.sampled_from([0.2, 0.5]),
    timeout=st.none() | st.floats(0.1, 2e6),
)
def test_a_wait_polls_less_often_as_it_goes_on(
    waited: float, more: float, shortest: float, timeout: float | None
) -> None:
    """A wait notices the end of a run within about 1% of the time it waited, polls at most
    every 2 s once it has waited minutes, and never sleeps past its timeout."""

    def pause_after(seconds: float) -> float:
        watch = Watch(
            lambda: (manifest(), Progress("running", 0, 0, 100)),
            label="daily",
            tables="final",
            uri="run",
            timeout=timeout,
            progress=False,
        )
        watch.started -= seconds
        if timeout is not None:
            watch.deadline = watch.started + timeout
        return watch.pause(shortest)

    step = pause_after(waited)
    assert step <= max(shortest, min(POLL_SHARE * waited, LONGEST_POLL_SECONDS)) + 1e-3
    if timeout is None:
        assert step >= shortest
        assert pause_after(waited + more) >= step - 1e-3  # never more often later on
    else:
        assert 0.0 <= step <= max(0.0, timeout - waited) + 1e-3


def test_figures_count_from_the_runs_own_start() -> None:
    now = dt.datetime.now(dt.UTC)
    began = (now - dt.timedelta(seconds=50)).isoformat(timespec="seconds")
    ended = (now - dt.timedelta(seconds=10)).isoformat(timespec="seconds")
    done = manifest(
        "completed", created_at=began, finished_at=ended, counts=Counts(succeeded=100, total=100)
    )
    assert elapsed_seconds(done) == pytest.approx(40, abs=1)
    figures = Figures(label="daily", state="completed", done=100, failed=0, total=100, elapsed=40)
    assert figures.rate == pytest.approx(2.5)
    assert figures.eta == 0
    running = Figures(label="d", state="running", done=20, failed=5, total=100, elapsed=25)
    assert running.rate == pytest.approx(1.0) and running.eta == pytest.approx(75)
    assert "25/100 (25%), 20 done, 5 failed, 1 leaf/s, ETA 1m15s" in running.line()
    # A retry restarts the clock: its rate is its own.
    retried = manifest(created_at=began, attempts=[{"reason": "retry_failed", "at": ended}])
    assert elapsed_seconds(retried, now) == pytest.approx(10, abs=1)
    assert [duration(s) for s in (0.2, 42, 185, 7620)] == ["<1s", "42s", "3m05s", "2h07m"]


def read_until(stream: Any, pattern: str, seen: list[str]) -> str:
    """Lines of ``stream`` until one matches ``pattern`` (the test's timeout bounds it)."""
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError(f"the stream ended before {pattern!r}; got:\n{''.join(seen)}")
        seen.append(line)
        if re.search(pattern, line):
            return line


def test_through_a_pipe_a_plain_line_repeats_and_a_summary_ends(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(tmp_path / "store"), str(gate)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=driver_env(SCYTHE_PROGRESS_SECONDS="0.1"),
    )
    seen: list[str] = []
    try:
        assert driver.stderr is not None and driver.stdout is not None
        first = read_until(driver.stderr, r"^daily v1\.0\.0: running, 0/6", seen)
        read_until(driver.stderr, r"^daily v1\.0\.0: running, 0/6", seen)  # it repeats
        gate.write_text("open")
        summary = read_until(driver.stderr, r"^daily v1\.0\.0: completed, ", seen)
        assert driver.stdout.read().strip() == "RESULT completed"
        assert driver.wait(timeout=60) == 0
    finally:
        driver.kill()
    assert "0 done, 0 failed" in first and "ETA ?" in first
    assert re.match(
        r"daily v1\.0\.0: completed, 6 done, 0 failed of 6 in \S+; tables in file://", summary
    )
    assert summary.rstrip().endswith("/final")
    assert not any("\r" in line for line in seen)


def test_in_a_terminal_a_bar_shows_and_a_summary_ends(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    child = pexpect.spawn(
        sys.executable,
        ["-c", DRIVER, str(tmp_path / "store"), str(gate)],
        env=driver_env(TERM="xterm", SCYTHE_PROGRESS="auto"),
        encoding="utf-8",
        dimensions=(24, 160),
        timeout=120,
    )
    try:
        child.expect(r"daily v1\.0\.0:\s+0%\|")
        child.expect(r"0/6, 0 failed, -, ETA \?, running")
        gate.write_text("open")
        child.expect(r"daily v1\.0\.0: completed, 6 done, 0 failed of 6 in \S+; tables in file://")
        child.expect("RESULT completed")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0


def test_a_bar_attached_to_a_finished_run_shows_the_runs_own_rate(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.write_text("open")
    store = tmp_path / "store"
    subprocess.run(
        [sys.executable, "-c", DRIVER, str(store), str(gate)],
        env=driver_env(SCYTHE_PROGRESS="off"),
        check=True,
        capture_output=True,
    )
    child = pexpect.spawn(
        sys.executable,
        ["-m", "scythe_oo", "status", "daily", "--watch", "--store", str(store)],
        env=driver_env(TERM="xterm"),
        encoding="utf-8",
        dimensions=(24, 160),
        timeout=120,
    )
    try:
        child.expect(r"100%\|.*\| 6/6, 0 failed, (\S+)( leaf/s)?, completed")
        shown = child.match.group(1)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    # The rate divides by the run's own duration (at least a second as the manifest counts
    # it), never by the microseconds since the bar appeared.
    assert shown == "-" or float(shown) <= 6.0
    assert child.exitstatus == 0


NOTEBOOK_RUN = textwrap.dedent(
    """
    from scythe_oo import LocalEngine, LocalStore
    from tests.support.daily import Daily, specs

    run = Daily.allocate(specs(6), store=LocalStore(root=STORE),
                         engine=LocalEngine(max_workers=2))
    run.wait()
    print("RESULT", run.status)
    """
)


def execute(cells: list[str], store: Path) -> nbformat.NotebookNode:
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(f"STORE = {str(store)!r}")]
    notebook.cells += [nbformat.v4.new_code_cell(cell) for cell in cells]
    client = NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT)}},
    )
    client.execute(env=driver_env())
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict[str, Any]]:
    return [output for cell in notebook.cells for output in cell.get("outputs", [])]


def test_in_a_notebook_with_ipywidgets_a_widget_shows_the_progress(tmp_path: Path) -> None:
    notebook = execute([NOTEBOOK_RUN], tmp_path / "store")
    found = outputs(notebook)
    views = [o for o in found if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1
    state = notebook.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    bars = [m["state"] for m in state.values() if m["model_name"] == "IntProgressModel"]
    texts = [m["state"]["value"] for m in state.values() if m["model_name"] == "HTMLModel"]
    assert [(bar["value"], bar["max"]) for bar in bars] == [(6, 6)]
    assert any("completed, 6 done, 0 failed of 6" in text for text in texts)
    printed = "".join(o.get("text", "") for o in found if o["output_type"] == "stream")
    assert "RESULT completed" in printed


def test_in_a_notebook_without_ipywidgets_plain_lines_show(tmp_path: Path) -> None:
    hide = "import sys\nsys.modules['ipywidgets'] = None  # as if it were not installed"
    notebook = execute([hide, NOTEBOOK_RUN], tmp_path / "store")
    found = outputs(notebook)
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in found)
    errors = "".join(o["text"] for o in found if o.get("name") == "stderr")
    assert re.search(r"^daily v1\.0\.0: \w+, \d+/6", errors, re.M)
    assert re.search(r"^daily v1\.0\.0: completed, 6 done, 0 failed of 6 in", errors, re.M)
    printed = "".join(o["text"] for o in found if o.get("name") == "stdout")
    assert "RESULT completed" in printed
