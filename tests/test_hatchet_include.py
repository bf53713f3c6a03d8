"""The Include() escape hatch: an existing Hatchet workflow as a versioned one-off run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from fixtures_hatchet import ROOT, TESTS, _free_port

from scythe_oo import ExperimentRun, LocalStore, include

pytestmark = [pytest.mark.hatchet, pytest.mark.timeout(180)]


def test_included_workflow_runs_versioned(hatchet_namespace: str, tmp_path: Path) -> None:
    from hatchet_workflows import PipelineInput, pipeline, whisper

    port = _free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
        "HATCHET_CLIENT_WORKER_HEALTHCHECK_ENABLED": "True",
        "HATCHET_CLIENT_WORKER_HEALTHCHECK_PORT": str(port),
        "HATCHET_CLIENT_WORKER_HEALTHCHECK_BIND_ADDRESS": "127.0.0.1",
    }
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [sys.executable, str(TESTS / "hatchet_workflows.py")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                    break
            except OSError:
                assert worker.poll() is None and time.monotonic() < deadline, "worker down"
                time.sleep(0.3)
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
        os.killpg(worker.pid, 15)
        worker.wait(timeout=20)
        log.close()
