"""The Include() escape hatch: an existing Hatchet workflow as a versioned one-off run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from fixtures_hatchet import TESTS, WorkerProcess

from scythe_oo import ExperimentRun, LocalStore, include

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(180)]


def test_included_workflow_runs_versioned(hatchet_namespace: str, tmp_path: Path) -> None:
    from hatchet_workflows import PipelineInput, pipeline, whisper

    worker = WorkerProcess(
        "include", [sys.executable, str(TESTS / "hatchet_workflows.py")], {}, tmp_path / "w.log"
    ).start()
    try:
        store = LocalStore(root=tmp_path / "store")
        included = include(pipeline, input_type=PipelineInput)
        assert included.name == "test_pipeline"  # without the namespace prefix
        first = included.allocate(PipelineInput(text="hi", times=3), store=store)
        first.wait(timeout=90)
        assert first.status == "completed"
        assert first.results.output() == {"result": "HI HI HI"}  # the final task's output
        second = included.allocate(PipelineInput(text="yo"), store=store).wait(timeout=90)
        assert [str(first.version), str(second.version)] == ["v1.0.0", "v1.1.0"]
        manifest = ExperimentRun.open(second.uri).manifest()
        assert manifest.experiment_class == f"hatchet-workflow:{hatchet_namespace}test_pipeline"
        assert manifest.one_off and manifest.status == "completed"
        quiet = include(whisper, input_type=PipelineInput).allocate(
            PipelineInput(text="HUSH"), store=store
        )
        assert quiet.wait(timeout=90).results.output() == {"quiet": "hush"}
    finally:
        worker.stop()
