"""HatchetEngine: the same tree and the same experiment classes, on many machines.

The engine is an adapter: it declares and registers the tasks, triggers the root node (or, for
a single spec, the experiment's task itself) and returns a handle that follows the run. Nodes
are durable, so a node waiting for its children holds no worker slot and deep trees cannot
deadlock a small pool.
"""

from __future__ import annotations

import json
import logging
import os

import attrs

from scythe_oo.engine.protocol import RunHandle, RunPlan
from scythe_oo.engines.hatchet.client import hatchet_client
from scythe_oo.engines.hatchet.handle import HatchetRunHandle
from scythe_oo.engines.hatchet.payloads import NodeTaskInput
from scythe_oo.engines.hatchet.tasks import hatchet_tasks, register_definitions
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest
from scythe_oo.runfolder.spec_columns import spec_json
from scythe_oo.runfolder.tables import read_table
from scythe_oo.storage.base import ArtifactStore

log = logging.getLogger("scythe_oo.hatchet")


SPLIT_ABOVE = 10_000
"""HatchetEngine's default for ``split_above``."""


@attrs.frozen(kw_only=True)
class HatchetEngine:
    """Runs on Hatchet workers (``scythe-oo worker ...``). The client connection comes from
    HATCHET_CLIENT_TOKEN and related settings; nothing connects until a run is submitted.

    A split spreads spawning and gathering over more workers, but every level of the tree
    adds a round of Hatchet's task assignment (about a second each) and splits a node's
    leaves into smaller, worse-balanced batches: 1,000 leaves of 20 ms split ten ways ran in
    ten nodes of two seconds' work each. So a node splits (as far as the recursion policy
    allows) only when it holds more than ``split_above`` specs; 0 follows the policy exactly.
    """

    split_above: int = attrs.field(
        default=SPLIT_ABOVE, validator=[attrs.validators.instance_of(int), attrs.validators.ge(0)]
    )

    def submit(self, plan: RunPlan) -> HatchetRunHandle:
        tasks = hatchet_tasks([plan.experiment])
        register_definitions(tasks)
        description = plan.store.describe()
        if plan.one_off:
            specs = spec_json(
                plan.experiment.schema.input_type, read_table(plan.store, plan.layout.specs)
            )
            input_model = tasks.leaf_inputs[plan.experiment.name]
            ref = tasks.leaves[plan.experiment.name].run(
                input_model(
                    experiment_id=plan.root.experiment_id,
                    store=description,
                    one_off=True,
                    specs=[json.loads(s) for s in specs],
                ),
                wait_for_result=False,
            )
        else:
            root = attrs.evolve(plan.root, split_above=self.split_above)
            ref = tasks.scatter_gather.run(
                NodeTaskInput.of(root, description), wait_for_result=False
            )
        return HatchetRunHandle(
            run_id=str(ref.workflow_run_id), store=plan.store, layout=plan.layout
        )

    def attach(self, manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
        if not manifest.engine_run_id:
            return None
        layout = RunLayout.from_experiment_id(manifest.experiment_id)
        return HatchetRunHandle(run_id=manifest.engine_run_id, store=store, layout=layout)

    def cancel(self, manifest: Manifest) -> None:
        if not manifest.engine_run_id:
            return
        try:
            hatchet_client().runs.cancel(manifest.engine_run_id)
        except Exception as exc:  # already finished, or unknown to a fresh engine: fine
            log.warning("could not cancel Hatchet run %s: %s", manifest.engine_run_id, exc)

    def describe(self) -> dict[str, str]:
        namespace = os.environ.get("HATCHET_CLIENT_NAMESPACE", "")
        return {"kind": "hatchet", "namespace": namespace, "split_above": str(self.split_above)}
