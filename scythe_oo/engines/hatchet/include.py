"""Include: run an existing Hatchet workflow as a versioned, single-spec scythe_oo run.

Some work does not fit "one spec in, one output out": a multi-step pipeline already written as
a hatchet_sdk Workflow, say. ``include`` gives such a workflow the run folders, versions,
manifests and status tracking of an experiment without rewriting it (the seed tool's
``ExperimentRegistry.Include()``). Serve it with ``WorkerConfig().start(additional_workflows=
[workflow])``.
"""

from __future__ import annotations

import uuid
from typing import Any

import attrs
import pyarrow as pa
import yaml
from pydantic import BaseModel

from scythe_oo.definition.checks import VERSION_POLICIES
from scythe_oo.driver.allocate import create_run_folder
from scythe_oo.driver.run import ExperimentRun
from scythe_oo.engines.hatchet.client import hatchet_client
from scythe_oo.engines.hatchet.handle import HatchetRunHandle
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest
from scythe_oo.runfolder.specs import SPEC_COLUMN
from scythe_oo.runfolder.tables import write_table
from scythe_oo.runfolder.versions import SemVer, resolve_version
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import default_store

INCLUDED_PREFIX = "hatchet-workflow:"
"""How an included workflow's manifest names its "class"."""


@attrs.frozen(kw_only=True)
class IncludedWorkflow:
    """A hatchet_sdk Workflow or Standalone that scythe_oo allocates one spec at a time."""

    workflow: Any
    input_type: type[BaseModel]
    name: str
    version_policy: str = attrs.field(
        default="bumpminor", validator=attrs.validators.in_(VERSION_POLICIES)
    )

    def allocate(
        self,
        spec: BaseModel,
        *,
        version: str | SemVer | None = None,
        store: ArtifactStore | None = None,
    ) -> ExperimentRun:
        """Validate ``spec``, write a versioned run folder and trigger the workflow."""
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

        def fill(layout: RunLayout) -> None:
            write_table(store, layout.specs, pa.table({SPEC_COLUMN: [validated.model_dump_json()]}))
            io_spec = {"input": self.input_type.model_json_schema()}
            store.put_bytes(layout.io_spec, yaml.safe_dump(io_spec, sort_keys=False).encode())
            store.put_bytes(layout.input_artifacts, yaml.safe_dump({"files": {}}).encode())

        # The workflow is triggered only once its folder is complete, and its run id recorded
        # with the queued state, so a follower in another process can always attach.
        run_id = str(uuid.uuid4())
        folder, _ = create_run_folder(store, manifest, fill)
        try:
            ref = self.workflow.run(validated, wait_for_result=False)
            run_id = str(ref.workflow_run_id)
            folder.write(folder.read().evolve(engine_run_id=run_id))
        except BaseException as exc:
            folder.failed(f"triggering {self.workflow.name} failed: {type(exc).__name__}: {exc}")
            raise
        handle = HatchetRunHandle(run_id=run_id, store=store, layout=folder.layout)
        return ExperimentRun(store=store, layout=folder.layout, experiment=None, handle=handle)


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
        name = str(workflow.name).removeprefix(hatchet_client().namespace)
    return IncludedWorkflow(
        workflow=workflow, input_type=input_type, name=name, version_policy=version_policy
    )
