"""final/: the tables a researcher reads, written once the root node is done.

Node tables carry the spec index as their first columns and name user tables ``df.<name>``;
final tables put the outputs first, the index levels last (with pandas metadata, so that
``pd.read_parquet`` gives the MultiIndex back), and drop the prefix. Tables are written first
and the manifest last, so a reader who sees a completed status always finds every table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import attrs
import pyarrow as pa

from scythe_oo.definition.errors import StoreError
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest, ManifestFile
from scythe_oo.runfolder.tables import dataframe_index_levels, open_parquet, pandas_index_metadata
from scythe_oo.storage.base import ArtifactStore, SweepsStaged
from scythe_oo.tree.collector import DATAFRAME_PREFIX, FAILURE_COLUMNS
from scythe_oo.tree.gather import copy_parquet
from scythe_oo.tree.job import NodeResult

log = logging.getLogger("scythe_oo.tree")


@attrs.frozen
class FinalShape:
    """How a node table appears in ``final/``: its file name, column order and metadata."""

    name: str
    columns: list[str]
    metadata: dict[bytes, bytes]


def final_shape(name: str, schema: pa.Schema, index: Sequence[str]) -> FinalShape | None:
    """The final form of the root's table ``name`` (None: it has no place in final/).

    ``index`` is the spec index (the failures table's columns that are not failure details);
    a user dataframe adds its own index levels to it.
    """
    levels = list(index)
    if name == "result_file_refs" and len(schema.names) == len(levels):
        return None  # the output schema has no file fields
    if name.startswith(DATAFRAME_PREFIX):
        levels = dataframe_index_levels(schema)
    columns = [*(c for c in schema.names if c not in levels), *levels]
    return FinalShape(final_name(name), columns, pandas_index_metadata(schema, levels))


def final_name(name: str) -> str:
    """The name a node table has in final/: a user table's without its prefix."""
    return name.removeprefix(DATAFRAME_PREFIX)


def spec_index(schema: pa.Schema) -> list[str]:
    """The spec index levels of a node's tables, read off its failures table's schema."""
    return [c for c in schema.names if c not in FAILURE_COLUMNS]


def finalize_run(store: ArtifactStore, layout: RunLayout, root: NodeResult) -> Manifest:
    """Write final/ from the root's tables, then mark the manifest complete.

    A gathered root's tables are copied batch by batch with pandas metadata added, so the
    root never holds a whole table (a root that ran its leaves wrote final/ itself).
    """
    final = layout.final_prefix + "/"
    pending = {name: key for name, key in root.tables.items() if not key.startswith(final)}
    if pending:
        with open_parquet(store, root.tables["failures"]) as failures:
            index = spec_index(failures.schema_arrow)
    for name, key in pending.items():
        with open_parquet(store, key) as parquet:  # one download per table, even on S3
            shape = final_shape(name, parquet.schema_arrow, index)
            if shape is not None:
                copy_parquet(
                    parquet, store, layout.final(shape.name), shape.columns, shape.metadata
                )
    _sweep(store, layout)
    return ManifestFile(store, layout).finished(root.succeeded, root.failed)


STAGED_GRACE_SECONDS = 600.0
"""How old a staged file or upload must be before a finishing run removes it: one its
writer is still at work on (a leaf log's last flush, say) is younger."""


def _sweep(store: ArtifactStore, layout: RunLayout) -> None:
    """Remove what killed writers staged in the run's folder (an interrupted attempt's
    temporary files, incomplete uploads). Never a reason for the run not to finish."""
    if not isinstance(store, SweepsStaged):
        return
    try:
        swept = store.sweep_staged(layout.root, STAGED_GRACE_SECONDS)
    except (StoreError, OSError) as exc:  # a worker role may not abort uploads (see deploy.md)
        log.info("staged leftovers of %s not swept: %s", store.uri(layout.root), exc)
        return
    if swept:
        log.info("swept %d staged leftover(s) of %s", swept, store.uri(layout.root))
