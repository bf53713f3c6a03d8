"""allocate: from specs to a running, versioned run folder.

Order matters here. Everything that can be checked is checked before the first byte is
written (the version, the strategies, every spec, every local file, every value's encoding),
so a mistake costs nothing and leaves nothing behind; then the run folder is claimed, input
files are uploaded once each, specs.pq and the YAML files are written, and only then is the
root node handed to the engine. The caller's spec objects are never modified.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.design import Design
from scythe_oo.definition.portable import to_portable
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.driver.code_version import code_version_soon
from scythe_oo.driver.prepare import prepare_specs
from scythe_oo.driver.resolve import (
    check_strategies_travel,
    resolve_collector,
    resolve_engine,
    resolve_recursion,
    resolve_store,
)
from scythe_oo.driver.run import ExperimentRun
from scythe_oo.driver.sources import spec_chunks
from scythe_oo.driver.submit import submit_run
from scythe_oo.engine.protocol import Engine
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest, ManifestFile
from scythe_oo.runfolder.versions import SemVer, resolve_version
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import ResultCollector


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
    """Check ``specs``, write a versioned run folder and hand it to the engine."""
    one_off = isinstance(specs, ExperimentInputSpec)
    design = getattr(specs, "design", None)  # sampled specs say how they were drawn
    code_version = code_version_soon(cls)
    store = resolve_store(cls, store)
    engine = resolve_engine(cls, engine)
    recursion = resolve_recursion(cls, recursion)
    collector = resolve_collector(cls, collector)
    check_strategies_travel(engine, recursion, collector)
    semver = resolve_version(store, cls.name, version, cls.version_policy)
    run_id = str(uuid.uuid4())
    with tempfile.TemporaryDirectory(prefix="scythe-allocate-") as staging:
        prepared = prepare_specs(cls, spec_chunks(cls, specs), Path(staging))
        manifest = Manifest(
            experiment_name=cls.name,
            experiment_class=f"{cls.__module__}:{cls.__qualname__}",
            version=str(semver),
            workflow_run_id=run_id,
            engine=engine.describe(),
            store=store.describe(),
            recursion=to_portable(recursion),
            collector=to_portable(collector),
            n_specs=prepared.count,
            one_off=one_off,
            design=design.to_dict() if isinstance(design, Design) else None,
            code_version=code_version(),
        )

        def fill(layout: RunLayout) -> None:
            uploaded = prepared.files.upload(store, layout)
            prepared.spool.write(store, layout.specs, layout.experiment_id, run_id, uploaded)
            store.put_bytes(
                layout.io_spec, yaml.safe_dump(cls.schema.io_spec(), sort_keys=False).encode()
            )
            store.put_bytes(layout.input_artifacts, prepared.files.artifacts_yaml(uploaded))

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
