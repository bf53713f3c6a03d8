"""Finding runs by what a researcher types, and listing what a store holds.

The command line names a run (``RUN``) in any of the ways a researcher has it at hand:

- a run folder's URI, as ``run.uri`` prints it (``file://...`` or ``s3://...``);
- a local path to a run folder (the one holding ``manifest.yml``);
- a run's id in the store, ``EXPERIMENT/vX.Y.Z/TIMESTAMP`` (``run.experiment_id``);
- ``EXPERIMENT``, the newest run of an experiment, or ``EXPERIMENT@vX.Y.Z``, the newest run
  of that version of it.

The last two are looked up in a store: the ``--store`` option's, else the one the SCYTHE_*
settings name.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from pathlib import Path
from typing import Literal

import attrs

from scythe_oo.driver.progress import elapsed_seconds, started_at
from scythe_oo.driver.run import ExperimentRun, driver_is_gone
from scythe_oo.runfolder.layout import RunLayout, is_run_timestamp, run_folders
from scythe_oo.runfolder.manifest import ManifestFile
from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import default_store

NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
_BY_NAME = re.compile(rf"^(?P<name>{NAME})(?:@(?P<version>v?\d{{1,9}}\.\d{{1,9}}\.\d{{1,9}}))?$")

RunKind = Literal["uri", "path", "id", "name"]

RUN_FORMS = (
    "a run folder URI (file://... or s3://...), a path to a run folder, a run id "
    "(EXPERIMENT/vX.Y.Z/TIMESTAMP), EXPERIMENT or EXPERIMENT@vX.Y.Z"
)


@attrs.frozen(kw_only=True)
class RunSpecifier:
    """What a ``RUN`` argument says, before any store is asked."""

    text: str
    kind: RunKind
    experiment: str | None = None
    version: SemVer | None = None


def parse_run(text: str) -> RunSpecifier:
    """Read a ``RUN`` argument; ValueError naming the accepted forms when it is none."""
    text = text.strip()
    if "://" in text:
        if not text.startswith(("file://", "s3://")):
            raise ValueError(f"RUN {text!r}: only file:// and s3:// URIs name run folders")
        return RunSpecifier(text=text, kind="uri")
    if (Path(text).expanduser() / "manifest.yml").is_file():
        return RunSpecifier(text=text, kind="path")
    parts = text.strip("/").split("/")
    if len(parts) >= 3 and SemVer.is_version(parts[-2]) and is_run_timestamp(parts[-1]):
        return RunSpecifier(text=text, kind="id", experiment="/".join(parts[:-2]))
    match = _BY_NAME.match(text)
    if match is None:
        raise ValueError(f"RUN {text!r} is not a run; give {RUN_FORMS}")
    version = match["version"]
    return RunSpecifier(
        text=text,
        kind="name",
        experiment=match["name"],
        version=None if version is None else SemVer.parse(version),
    )


def locate_run(text: str, store: ArtifactStore | None = None) -> ExperimentRun:
    """The run ``text`` names (see the module docstring); LookupError when there is none."""
    found = parse_run(text)
    if found.kind == "uri":
        return ExperimentRun.open(found.text, store=store if _holds(store, found.text) else None)
    if found.kind == "path":
        return ExperimentRun.open(Path(found.text).expanduser().resolve().as_uri())
    store = store or default_store()
    if found.kind == "id":
        layout = RunLayout.from_experiment_id(found.text)
        if not store.exists(layout.manifest):
            raise LookupError(f"no run {found.text} in {store.uri('')}")
        return ExperimentRun(store=store, layout=layout)
    assert found.experiment is not None
    layouts = run_folders(store, found.experiment)
    if found.version is not None:
        versions = sorted({layout.version for layout in layouts}, reverse=True)
        layouts = [layout for layout in layouts if layout.version == found.version]
        if not layouts and versions:
            have = ", ".join(str(v) for v in versions)
            raise LookupError(f"{found.experiment} has no run of {found.version}; it has {have}")
    if not layouts:
        raise LookupError(_no_runs(store, found.experiment))
    return ExperimentRun(store=store, layout=layouts[0])


def _holds(store: ArtifactStore | None, uri: str) -> bool:
    return store is not None and store.key_of(uri.rstrip("/")) is not None


def _no_runs(store: ArtifactStore, experiment: str) -> str:
    known = experiments_in(store)
    close = difflib.get_close_matches(experiment, known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    listed = ", ".join(known) or "none"
    return (
        f"no runs of {experiment!r} in {store.uri('')}.{hint} Experiments there: {listed}. "
        "(--store or SCYTHE_STORAGE_BUCKET / SCYTHE_LOCAL_ROOT choose the store.)"
    )


def experiments_in(store: ArtifactStore) -> list[str]:
    """Names of the experiments that have at least one version folder in ``store``."""
    return [
        name
        for name in store.list_dirs("")
        if any(SemVer.is_version(child) for child in store.list_dirs(name))
    ]


@attrs.frozen(kw_only=True)
class RunSummary:
    """One line of ``scythe-oo runs``: a run, its state and counts, read from its manifest."""

    experiment: str
    version: str
    run: str
    status: str
    succeeded: int
    failed: int
    total: int
    started: str
    seconds: float
    engine: str
    uri: str

    def as_dict(self) -> dict[str, object]:
        return attrs.asdict(self)


def run_summaries(store: ArtifactStore, experiment: str | None = None) -> list[RunSummary]:
    """Every run in ``store`` (or of ``experiment``), newest first. A run still queued or
    running is shown as its manifest says, or ``interrupted`` when its local driver died."""
    names = [experiment] if experiment is not None else experiments_in(store)
    layouts = [layout for name in names for layout in run_folders(store, name)]
    if experiment is not None and not layouts:
        raise LookupError(_no_runs(store, experiment))
    layouts.sort(key=lambda layout: (layout.timestamp, layout.version), reverse=True)
    summaries = []
    for layout in layouts:
        manifest = ManifestFile(store, layout).read()
        status = manifest.status
        if status in ("queued", "running") and driver_is_gone(manifest, store):
            status = "interrupted"
        summaries.append(
            RunSummary(
                experiment=layout.experiment,
                version=str(layout.version),
                run=layout.timestamp,
                status=status,
                succeeded=manifest.counts.succeeded,
                failed=manifest.counts.failed,
                total=manifest.n_specs,
                started=started_at(manifest).isoformat(timespec="seconds"),
                seconds=elapsed_seconds(manifest, dt.datetime.now(dt.UTC)),
                engine=manifest.engine.get("kind", ""),
                uri=store.uri(layout.root),
            )
        )
    return summaries
