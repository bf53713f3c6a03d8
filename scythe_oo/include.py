"""Include: run an existing Hatchet workflow as a versioned, single-spec scythe_oo run.

Some work does not fit "one spec in, one output out": a multi-step pipeline already written as
a hatchet_sdk Workflow, say. ``include`` gives such a workflow the run folders, versions,
manifests and status tracking of an experiment without rewriting it (the seed tool's
``ExperimentRegistry.Include()``). Serve it with ``WorkerConfig().start(additional_workflows=
[workflow])``.
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
import yaml
from pydantic import BaseModel

from scythe_oo.layout import claim_run_folder, resolve_version
from scythe_oo.manifest import Manifest, utc_now
from scythe_oo.tables import write_table

if TYPE_CHECKING:
    from scythe_oo.layout import SemVer
    from scythe_oo.run import ExperimentRun
    from scythe_oo.store.base import ArtifactStore

INCLUDED_PREFIX = "hatchet-workflow:"


@attrs.frozen(kw_only=True)
class IncludedWorkflow:
    """A hatchet_sdk Workflow or Standalone that scythe_oo allocates one spec at a time."""

    workflow: Any
    input_type: type[BaseModel]
    name: str
    version_policy: str = "bumpminor"

    def allocate(
        self,
        spec: BaseModel,
        *,
        version: str | SemVer | None = None,
        store: ArtifactStore | None = None,
    ) -> ExperimentRun:
        """Validate ``spec``, write a versioned run folder and trigger the workflow."""
        from scythe_oo.engine.hatchet import HatchetRunHandle
        from scythe_oo.run import ExperimentRun
        from scythe_oo.strategies import default_store

        validated = self.input_type.model_validate(
            spec.model_dump() if isinstance(spec, BaseModel) else spec
        )
        store = store or default_store()
        semver = resolve_version(store, self.name, version, self.version_policy)
        manifest = Manifest(
            experiment_name=self.name,
            experiment_class=f"{INCLUDED_PREFIX}{self.workflow.name}",
            version=str(semver),
            workflow_run_id=str(uuid.uuid4()),
            engine={"kind": "hatchet", "included": "true"},
            store=store.describe(),
            recursion={"factor": 1, "max_depth": 0},
            n_specs=1,
            one_off=True,
        )
        layout = claim_run_folder(store, self.name, semver, manifest.to_yaml())
        payload = validated.model_dump_json()
        write_table(store, layout.specs, pa.table({"__spec__": [payload]}))
        io_spec = {"input": self.input_type.model_json_schema()}
        store.put_bytes(layout.io_spec, yaml.safe_dump(io_spec, sort_keys=False).encode())
        store.put_bytes(layout.input_artifacts, yaml.safe_dump({"files": {}}).encode())
        ref = self.workflow.run(validated, wait_for_result=False)
        run_id = str(ref.workflow_run_id)
        manifest = manifest.evolve(
            experiment_id=layout.experiment_id,
            io_spec=store.uri(layout.io_spec),
            input_artifacts=store.uri(layout.input_artifacts),
            specs_uri=store.uri(layout.specs),
            status="queued",
            engine_run_id=run_id,
        )
        store.put_bytes(layout.manifest, manifest.to_yaml())
        handle = HatchetRunHandle(run_id=run_id, store=store, layout=layout)
        return ExperimentRun(store=store, layout=layout, experiment=None, handle=handle)


def include(
    workflow: Any,
    *,
    input_type: type[BaseModel],
    name: str | None = None,
    version_policy: str = "bumpminor",
) -> IncludedWorkflow:
    """Wrap an existing Hatchet workflow so that ``.allocate(spec)`` makes a versioned run."""
    if name is None:
        # Hatchet prefixes names with the client's namespace; run folders should not carry it.
        from scythe_oo.engine.hatchet import hatchet_client

        namespace = hatchet_client().namespace
        name = str(workflow.name).removeprefix(namespace)
    return IncludedWorkflow(
        workflow=workflow, input_type=input_type, name=name, version_policy=version_policy
    )


def final_output(details: Any) -> Any | None:
    """The output of a finished workflow run, read from its DAG's last tasks.

    The engine's run-level ``output`` is not a safe source: just after a DAG finishes it can
    still hold an earlier task's output (seen in CI on hatchet-lite v0.105.0). The shape says
    which tasks nothing depends on; their outputs are the run's result. ``None`` means those
    outputs are not all visible yet, so the caller asks again later rather than record a wrong
    result. One last task gives its output; several give ``{task_name: output}``.
    """
    shape = list(details.shape)
    if not shape:  # no DAG to read: the run-level output is all there is
        return details.run.output
    by_task = {str(task.task_external_id): task for task in details.tasks}
    outputs: dict[str, Any] = {}
    for step in shape:
        if step.children_step_ids:
            continue
        task = by_task.get(str(step.task_external_id))
        if task is None or getattr(task.status, "name", str(task.status)) != "COMPLETED":
            return None
        outputs[str(step.task_name)] = task.output
    return next(iter(outputs.values())) if len(outputs) == 1 else outputs


def record_included_result(
    store: ArtifactStore, manifest: Manifest, layout_key: str, output: Any
) -> Manifest:
    """Write the workflow's output as final/output.json and mark the run completed."""
    store.put_bytes(f"{layout_key}/final/output.json", json.dumps(output, default=str).encode())
    done = manifest.evolve(
        status="completed",
        finished_at=utc_now(),
        counts=attrs.evolve(manifest.counts, succeeded=1, total=1),
    )
    return done
