"""Including an existing Hatchet workflow: the output rule, on captured run details, and a real
included run against the engine."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from hatchet_sdk.clients.rest.models.v1_workflow_run_details import V1WorkflowRunDetails

from scythe_oo import ExperimentRun, LocalStore, include
from scythe_oo.engines.hatchet.handle import final_output
from tests.support.hatchet import WorkerProcess

CAPTURED = Path(__file__).parent / "data" / "hatchet_pipeline_run_details.json"


@pytest.fixture
def raw() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(CAPTURED.read_text())
    return loaded


def _task(raw: dict[str, Any], name: str) -> dict[str, Any]:
    (task,) = [t for t in raw["tasks"] if t["displayName"].startswith(f"{name}-")]
    return task


def _details(raw: dict[str, Any]) -> V1WorkflowRunDetails:
    details = V1WorkflowRunDetails.from_dict(raw)
    assert details is not None
    return details


def test_the_last_task_of_the_dag_is_the_result(raw: dict[str, Any]) -> None:
    assert final_output(_details(raw)) == {"result": "HI HI HI"}


def test_a_stale_run_level_output_is_not_recorded(raw: dict[str, Any]) -> None:
    raw["run"]["output"] = {"loud": "HI"}  # what CI read from runs.get_result
    assert final_output(_details(raw)) == {"result": "HI HI HI"}


def test_an_unfinished_last_task_means_ask_again(raw: dict[str, Any]) -> None:
    repeat = _task(raw, "repeat")
    repeat["status"] = "RUNNING"
    repeat["output"] = {}
    assert final_output(_details(raw)) is None


def test_a_last_task_not_yet_listed_means_ask_again(raw: dict[str, Any]) -> None:
    raw["tasks"] = [_task(raw, "shout")]
    assert final_output(_details(raw)) is None


def test_several_last_tasks_are_keyed_by_task_name(raw: dict[str, Any]) -> None:
    for step in raw["shape"]:
        step["childrenStepIds"] = []  # shout and repeat both become ends of the DAG
    assert final_output(_details(raw)) == {
        "shout": {"loud": "HI"},
        "repeat": {"result": "HI HI HI"},
    }


@pytest.mark.hatchet
@pytest.mark.timeout(180)
def test_included_workflow_runs_versioned(hatchet_namespace: str, tmp_path: Path) -> None:
    from tests.support.hatchet_workflows import PipelineInput, pipeline, whisper

    worker = WorkerProcess(
        "include", [sys.executable, "-m", "tests.support.hatchet_workflows"], {}, tmp_path / "w.log"
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
