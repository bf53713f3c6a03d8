"""A node's stored tables and its checkpoint: what every node leaves behind, and reads back.

Node outputs are checkpoints: the marker ``_done.json`` is written only once the node's tables
are stored, so a resumed run that finds it skips the whole subtree.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import attrs
import pyarrow as pa

from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.runfolder.layout import ROOT_NODE
from scythe_oo.runfolder.tables import open_parquet, write_table
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import NodeTables, takes_reshapes
from scythe_oo.tree.final import final_name, final_shape, spec_index
from scythe_oo.tree.gather import Reshape
from scythe_oo.tree.job import NodeJob, NodeResult


def load_node_result(store: ArtifactStore, job: NodeJob) -> NodeResult | None:
    """The node's checkpoint, if it is still valid: a node with failures from an older
    generation must run again under ``retry_failed``."""
    try:
        raw = json.loads(store.get_bytes(job.layout.node_done(job.node)))
    except ArtifactNotFoundError:
        return None
    result = NodeResult(**raw)
    if result.failed and result.generation != job.generation:
        return None
    return result


def write_node(
    store: ArtifactStore, job: NodeJob, tables: NodeTables, leaf_parent: bool
) -> NodeResult:
    """Store a base node's tables. A root that ran its leaves itself writes ``final/`` at
    once, in its final form, so finalize_run has nothing left to copy."""
    keys = {}
    index = spec_index(tables.tables["failures"].schema)
    for name, table in tables.tables.items():
        if job.node == ROOT_NODE:
            shape = final_shape(name, table.schema, index)
            if shape is None:
                continue
            key = job.layout.final(shape.name)
            table = table.select(shape.columns).replace_schema_metadata(shape.metadata)
        else:
            key = job.layout.node_output(job.node, name)
        write_table(store, key, table)
        keys[name] = key
    return record_node(store, job, keys, tables.succeeded, tables.failed, leaf_parent)


def gather_tables(
    store: ArtifactStore, job: NodeJob, parts: Sequence[NodeResult], leaf_parent: bool = False
) -> NodeResult:
    """Merge the tables of the node's parts (its children, or the windows of a large base
    node), read by key, into the node's own; the counts add up."""
    names = sorted({name for r in parts for name in r.tables})
    sources = {name: [r.tables[name] for r in parts if name in r.tables] for name in names}
    if job.node == ROOT_NODE and takes_reshapes(job.collector):
        keys = _gather_final(store, job, sources)
    else:  # a root whose combine takes no reshapes is copied into final/ by finalize_run
        keys = {name: job.layout.node_output(job.node, name) for name in names}
        job.collector.combine(store, sources, keys)
    return record_node(
        store,
        job,
        keys,
        succeeded=sum(r.succeeded for r in parts),
        failed=sum(r.failed for r in parts),
        leaf_parent=leaf_parent,
    )


def _gather_final(
    store: ArtifactStore, job: NodeJob, sources: dict[str, list[str]]
) -> dict[str, str]:
    """Merge the root's parts straight into final/, each table in its final layout, so that
    finalize_run has nothing left to copy; the keys written, by table name."""
    with open_parquet(store, sources["failures"][0]) as failures:
        index = spec_index(failures.schema_arrow)
    left_out: set[str] = set()

    def reshape(name: str) -> Reshape:
        def final_schema(schema: pa.Schema) -> pa.Schema | None:
            shape = final_shape(name, schema, index)
            if shape is None:
                left_out.add(name)
                return None
            return pa.schema([schema.field(c) for c in shape.columns], metadata=shape.metadata)

        return final_schema

    keys = {name: job.layout.final(final_name(name)) for name in sources}
    job.collector.combine(store, sources, keys, {name: reshape(name) for name in sources})
    return {name: key for name, key in keys.items() if name not in left_out}


def record_node(
    store: ArtifactStore,
    job: NodeJob,
    keys: dict[str, str],
    succeeded: int,
    failed: int,
    leaf_parent: bool,
) -> NodeResult:
    """Checkpoint the node once its tables are stored: the marker is always written last."""
    result = NodeResult(
        node=job.node,
        tables=keys,
        succeeded=succeeded,
        failed=failed,
        generation=job.generation,
        leaf_parent=leaf_parent,
    )
    store.put_bytes(job.layout.node_done(job.node), json.dumps(attrs.asdict(result)).encode())
    return result
