"""Running one node of the scatter/gather tree, the same way on every engine.

A node reads its slice of specs from the store. If the recursion policy (and the engine) say
so, it splits them grid-stride into children and has the engine run those; otherwise it is a
base node and has the engine run its leaves (``base_node``). Either way it gathers what came
back into Arrow tables, writes them to ``scatter-gather/output/<node>/`` and returns only their
keys. A node whose checkpoint is already in the store returns it at once, so a resumed run
skips every finished subtree.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.base_node import run_base_node
from scythe_oo.tree.job import Dispatcher, NodeJob, NodeResult
from scythe_oo.tree.node_tables import gather_tables, load_node_result
from scythe_oo.tree.scatter import child_sizes, count_rows, split_grid_stride


async def run_node(
    cls: AnyExperiment, job: NodeJob, store: ArtifactStore, dispatcher: Dispatcher
) -> NodeResult:
    """Run one node of the tree (and, through the dispatcher, everything below it)."""
    done = await asyncio.to_thread(load_node_result, store, job)
    if done is not None:
        return done
    n_specs = job.n_specs
    if n_specs < 0:  # the root: its size is in the footer of specs.pq
        n_specs = await asyncio.to_thread(count_rows, store, job.specs_key())
    fan_out = job.recursion.children(job.depth, n_specs)
    if fan_out < 2 or not dispatcher.splits(job, n_specs):
        # A base node holds a window of specs and outcomes while it runs: admission keeps
        # only a few of them in memory at once, however many nodes the tree has.
        async with dispatcher.admission():
            return await run_base_node(cls, job, n_specs, store, dispatcher)
    children = [job.child(i, size) for i, size in enumerate(child_sizes(n_specs, fan_out))]
    await asyncio.to_thread(_scatter, store, job, children)
    results = await dispatcher.run_nodes(children)
    return await asyncio.to_thread(gather_tables, store, job, results)


def _scatter(store: ArtifactStore, job: NodeJob, children: Sequence[NodeJob]) -> None:
    """Write the children's specs; a replayed node leaves the ones already written alone."""
    missing = [None if store.exists(c.specs_key()) else c.specs_key() for c in children]
    if any(missing):
        split_grid_stride(store, job.specs_key(), missing, len(children))
