"""Handing a written run folder to an engine: for allocate, resume and retry_failed alike."""

from __future__ import annotations

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.portable import from_portable
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.engine.protocol import Engine, RunHandle, RunPlan
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.tree.collector import ResultCollector
from scythe_oo.tree.job import NodeJob


def root_job(
    cls: AnyExperiment,
    layout: RunLayout,
    manifest: Manifest,
    strategies: tuple[RecursionPolicy, ResultCollector] | None = None,
) -> NodeJob:
    """The root node of a run: with ``strategies`` as given (allocate, in the process that
    chose them), else as its manifest recorded them (resume and retry, in any process)."""
    recursion, collector = strategies or (
        from_portable(manifest.recursion, RecursionPolicy),
        from_portable(manifest.collector, ResultCollector),
    )
    return NodeJob(
        experiment=cls.name,
        experiment_id=layout.experiment_id,
        recursion=recursion,
        collector=collector,
        generation=manifest.generation,
        n_specs=manifest.n_specs,
    )


def submit_run(
    cls: AnyExperiment,
    store: ArtifactStore,
    layout: RunLayout,
    manifest: Manifest,
    engine: Engine,
    strategies: tuple[RecursionPolicy, ResultCollector] | None = None,
) -> RunHandle:
    plan = RunPlan(
        experiment=cls,
        layout=layout,
        store=store,
        root=root_job(cls, layout, manifest, strategies),
        n_specs=manifest.n_specs,
        one_off=manifest.one_off,
    )
    return engine.submit(plan)
