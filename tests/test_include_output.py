"""Which output an included workflow's run records, read from a real engine's run details.

The payload in tests/data was captured from hatchet-lite v0.105.0 after a two-task pipeline
(shout -> repeat) finished. The cases below edit it into the states the engine can report
while a run is finishing, including the one CI met: run status COMPLETED while the run-level
output still held the first task's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hatchet_sdk.clients.rest.models.v1_workflow_run_details import V1WorkflowRunDetails

from scythe_oo.include import final_output

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
