"""examples/daily_loop.ipynb runs from top to bottom in a real Jupyter kernel, as a researcher
would open it: specs, allocate, progress, results, replay, and the shell commands."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.support.cli import ROOT, cli_env

pytestmark = pytest.mark.timeout(600)

NOTEBOOK = ROOT / "examples" / "daily_loop.ipynb"


def test_the_daily_loop_notebook_runs(tmp_path: Path) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    client = NotebookClient(
        notebook,
        timeout=480,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},  # where Jupyter would start it
    )
    client.execute(env=cli_env(SCYTHE_LOCAL_ROOT=str(tmp_path / "store")))  # raises on an error
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    data = [o.get("data", {}) for o in outputs]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        d.get("text/plain", "") + d.get("text/html", "") for d in data
    )
    assert any("application/vnd.jupyter.widget-view+json" in d for d in data)  # progress
    assert "simulate_energy v1.0.0: completed, 24 done, 0 failed of 24" in text
    assert "completed - 0 failures" in text
    assert "simulate_energy spec #0: ok in" in text
    assert "simulate_energy  v1.0.0" in text and "status     completed" in text
    assert list((tmp_path / "store" / "simulate_energy").iterdir())  # the run went to the store
