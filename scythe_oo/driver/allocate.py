"""allocate: from a list of specs to a running, versioned run folder.

Order matters here. Everything that can be checked is checked before the first byte is
written (every spec, every local file), so a mistake costs nothing; then the run folder is
claimed, input files are uploaded once each, the tables and YAML files are written, and only
then is the root node handed to the engine. The caller's spec objects are never modified.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pyarrow as pa
import yaml

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.design import Design
from scythe_oo.definition.portable import to_portable
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.driver.code_version import code_version_soon
from scythe_oo.driver.input_files import (
    Uploaded,
    input_artifacts_yaml,
    repointed,
    upload_inputs,
)
from scythe_oo.driver.resolve import (
    check_strategies_travel,
    resolve_collector,
    resolve_engine,
    resolve_recursion,
    resolve_store,
)
from scythe_oo.driver.run import ExperimentRun
from scythe_oo.driver.submit import submit_run
from scythe_oo.driver.validate import VALIDATE_ROWS, SpecScan, as_list, fields_of, scan_specs
from scythe_oo.engine.protocol import Engine
from scythe_oo.runfolder import specs as specs_format
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest, ManifestFile
from scythe_oo.runfolder.specs import (
    EncodedChunk,
    encode_chunk,
    specs_table,
    write_specs,
)
from scythe_oo.runfolder.versions import SemVer, resolve_version
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import ResultCollector
from scythe_oo.tree.gcpause import paused_gc


def allocate_run(
    cls: AnyExperiment,
    specs: Any,
    *,
    version: str | SemVer | None = None,
    store: ArtifactStore | None = None,
    engine: Engine | None = None,
    recursion: RecursionPolicy | None = None,
    collector: ResultCollector | None = None,
) -> ExperimentRun:
    """Validate ``specs``, write a versioned run folder and hand it to the engine."""
    one_off = isinstance(specs, ExperimentInputSpec)
    design = getattr(specs, "design", None)  # sampled specs say how they were drawn
    code_version = code_version_soon(cls)
    with paused_gc():
        items = [specs] if one_off else as_list(cls, specs)
        scan = scan_specs(cls, items)

    store = resolve_store(cls, store)
    engine = resolve_engine(cls, engine)
    recursion = resolve_recursion(cls, recursion)
    collector = resolve_collector(cls, collector)
    check_strategies_travel(engine, recursion, collector)
    semver = resolve_version(store, cls.name, version, cls.version_policy)
    run_id = str(uuid.uuid4())
    manifest = Manifest(
        experiment_name=cls.name,
        experiment_class=f"{cls.__module__}:{cls.__qualname__}",
        version=str(semver),
        workflow_run_id=run_id,
        engine=engine.describe(),
        store=store.describe(),
        recursion=to_portable(recursion),
        collector=to_portable(collector),
        n_specs=len(items),
        one_off=one_off,
        design=design.to_dict() if isinstance(design, Design) else None,
        code_version=code_version(),
    )

    def fill(layout: RunLayout) -> None:
        uploaded = upload_inputs(store, layout, scan.files)
        write_specs(
            store,
            layout.specs,
            lambda: specs_tables(cls, items, scan, layout.experiment_id, run_id, uploaded),
        )
        store.put_bytes(
            layout.io_spec, yaml.safe_dump(cls.schema.io_spec(), sort_keys=False).encode()
        )
        store.put_bytes(layout.input_artifacts, input_artifacts_yaml(uploaded, scan.files))

    folder, manifest = create_run_folder(store, manifest, fill)
    try:
        handle = submit_run(
            cls, store, folder.layout, manifest, engine, strategies=(recursion, collector)
        )
    except BaseException as exc:
        folder.failed(f"submitting to the engine failed: {type(exc).__name__}: {exc}")
        raise
    return ExperimentRun(store=store, layout=folder.layout, experiment=cls, handle=handle)


def create_run_folder(
    store: ArtifactStore,
    manifest: Manifest,
    fill: Callable[[RunLayout], None],
    engine_run_id: str | None = None,
) -> tuple[ManifestFile, Manifest]:
    """Claim a fresh folder, let ``fill`` write its files, and mark it queued.

    Shared by allocate and by included Hatchet workflows: a folder that could not be filled
    is left marked failed with the reason, never half-written and silent.
    """
    folder = ManifestFile.claim(store, manifest)
    try:
        fill(folder.layout)
        manifest = folder.queued(manifest, engine_run_id)
    except BaseException as exc:
        folder.failed(f"allocate failed: {type(exc).__name__}: {exc}")
        raise
    return folder, manifest


def specs_tables(
    cls: AnyExperiment,
    items: Sequence[Any],
    scan: SpecScan,
    experiment_id: str,
    run_id: str,
    uploaded: Uploaded,
) -> Iterator[pa.Table]:
    """specs.pq, chunk by chunk: the index columns of every spec plus each spec as JSON
    (``__spec__``). The scan's encoding is used when it has one and no local file had to be
    re-pointed at its uploaded copy; otherwise each chunk is validated and encoded again."""
    if scan.encoded is not None and not uploaded:  # the whole sweep is one chunk, encoded
        with paused_gc():
            table = specs_table(cls.schema, scan.encoded, 0, scan.computed, experiment_id, run_id)
        yield table
        return
    rows = specs_format.SPECS_CHUNK_ROWS
    for start in range(0, len(items), rows):
        with paused_gc():
            encoded = encode_specs(cls, items[start : start + rows], scan.computed, uploaded)
            table = specs_table(cls.schema, encoded, start, scan.computed, experiment_id, run_id)
        yield table


def encode_specs(
    cls: AnyExperiment,
    items: Sequence[Any],
    computed: Sequence[str],
    uploaded: Uploaded,
) -> list[EncodedChunk]:
    """Validate and encode specs again, with local files pointing at uploaded copies.

    ``scan_specs`` already found any problem, so this pass only re-points and re-encodes.
    """
    input_type = cls.schema.input_type
    encoded = []
    for first in range(0, len(items), VALIDATE_ROWS):
        chunk = items[first : first + VALIDATE_ROWS]
        specs = cls.schema.spec_list.validate_python(
            [fields_of(input_type, item) for item in chunk]
        )
        encoded.append(
            encode_chunk(cls.schema, [repointed(cls, s, uploaded) for s in specs], computed)
        )
    return encoded
