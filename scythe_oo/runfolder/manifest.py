"""manifest.yml: the one file that says what a run is and how it ended, and every change to it.

A run moves allocating -> queued -> running -> completed | completed_with_failures | failed, and
``resume``/``retry_failed`` send a finished or interrupted run back to queued. Each of these
changes is a method of ``ManifestFile``, so the file is read, changed and rewritten in one
place. Everything here is safe to share: no tokens, keys or credentials are ever written.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any, Literal

import attrs
import cattrs
import yaml

from scythe_oo.definition.redact import redact
from scythe_oo.definition.version import __version__
from scythe_oo.runfolder.layout import RunLayout, claim_run_folder
from scythe_oo.runfolder.versions import SemVer

if TYPE_CHECKING:
    from scythe_oo.storage.base import ArtifactStore

# The C loader when PyYAML was built with libyaml: wait() rereads the manifest every 0.2 s.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

RunState = Literal[
    "allocating",
    "queued",
    "running",
    "completed",
    "completed_with_failures",
    "failed",
    "interrupted",
]
"""``interrupted`` is never written: it is what a reader concludes when a run's status says
queued or running but its driver is gone (see ExperimentRun.status)."""

TERMINAL_STATES: frozenset[str] = frozenset({"completed", "completed_with_failures", "failed"})
ACTIVE_STATES: frozenset[str] = frozenset({"allocating", "queued", "running"})


@attrs.frozen(kw_only=True)
class Counts:
    """How many specs succeeded and failed, out of how many."""

    succeeded: int = 0
    failed: int = 0
    total: int = 0


@attrs.frozen(kw_only=True)
class Manifest:
    """The contents of manifest.yml."""

    experiment_id: str = ""
    """Empty until the run folder is claimed; the other URIs until their files are written."""
    experiment_name: str
    experiment_class: str
    version: str
    created_at: str = attrs.field(factory=lambda: utc_now())
    io_spec: str = ""
    input_artifacts: str = ""
    specs_uri: str = ""
    workflow_run_id: str
    engine: dict[str, str]
    store: dict[str, str]
    recursion: dict[str, Any]
    """The recursion policy, by value: ``{"type": "module:Class", **fields}``."""
    collector: dict[str, Any] = attrs.field(factory=dict)
    """The result collector, by value; empty in run folders written before it was recorded."""
    n_specs: int
    one_off: bool = False
    generation: int = 1
    status: RunState = "allocating"
    counts: Counts = Counts()
    engine_run_id: str | None = None
    finished_at: str | None = None
    error: str | None = None
    attempts: list[dict[str, Any]] = attrs.field(factory=list)
    scythe_oo_version: str = __version__
    design: dict[str, Any] | None = None
    """How the specs were sampled (``Design.to_dict()``), when they were; enough to draw
    them again."""
    code_version: dict[str, Any] | None = None
    """The git commit, branch and dirty flag of the repository holding the experiment's code,
    when it is in one."""

    def evolve(self, **changes: Any) -> Manifest:
        return attrs.evolve(self, **changes)

    def to_yaml(self) -> bytes:
        return yaml.safe_dump(_CONVERTER.unstructure(self), sort_keys=False).encode()

    @classmethod
    def from_yaml(cls, data: bytes) -> Manifest:
        raw = yaml.load(data, Loader=_LOADER)
        known = {a.name for a in attrs.fields(cls)}
        return _CONVERTER.structure({k: v for k, v in raw.items() if k in known}, cls)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


_CONVERTER = cattrs.Converter()


@attrs.frozen
class ManifestFile:
    """manifest.yml of one run folder, and the state changes a run goes through."""

    store: ArtifactStore
    layout: RunLayout

    @classmethod
    def claim(cls, store: ArtifactStore, manifest: Manifest) -> ManifestFile:
        """Claim a fresh run folder for ``manifest``'s experiment and version."""
        version = SemVer.parse(manifest.version)
        layout = claim_run_folder(store, manifest.experiment_name, version, manifest.to_yaml())
        return cls(store, layout)

    def read(self) -> Manifest:
        return Manifest.from_yaml(self.store.get_bytes(self.layout.manifest))

    def write(self, manifest: Manifest) -> Manifest:
        self.store.put_bytes(self.layout.manifest, manifest.to_yaml())
        return manifest

    def queued(self, manifest: Manifest, engine_run_id: str | None = None) -> Manifest:
        """Every file of the run folder is written: the run can be handed to an engine."""
        store, layout = self.store, self.layout
        return self.write(
            manifest.evolve(
                experiment_id=layout.experiment_id,
                io_spec=store.uri(layout.io_spec),
                input_artifacts=store.uri(layout.input_artifacts),
                specs_uri=store.uri(layout.specs),
                status="queued",
                engine_run_id=engine_run_id,
            )
        )

    def running(self, engine_run_id: str | None) -> None:
        """The engine picked the run up, and can be followed under ``engine_run_id``."""
        manifest = self.read()
        if manifest.status in ACTIVE_STATES:
            self.write(manifest.evolve(status="running", engine_run_id=engine_run_id))

    def failed(self, error: str) -> None:
        """The run stopped without final tables, and why (with secrets masked)."""
        self.write(self.read().evolve(status="failed", error=redact(error), finished_at=utc_now()))

    def finished(self, succeeded: int, failed: int) -> Manifest:
        """Every final table is written; this is always the last write of a run."""
        return self.write(
            self.read().evolve(
                status="completed_with_failures" if failed else "completed",
                counts=Counts(succeeded=succeeded, failed=failed, total=succeeded + failed),
                finished_at=utc_now(),
                error=None,
            )
        )

    def restarted(
        self, manifest: Manifest, *, reason: str, generation: int, engine: dict[str, str]
    ) -> Manifest:
        """``resume`` or ``retry_failed`` sends the run back to the queue; the history stays.

        The old attempt's engine run id goes: until the new engine names its own, a process
        following the run must not attach to the old one (cancelled a moment ago) and record
        its end as this attempt's failure."""
        history = [
            *manifest.attempts,
            {
                "reason": reason,
                "generation": generation,
                "at": utc_now(),
                "previous_status": manifest.status,
                "previous_counts": attrs.asdict(manifest.counts),
            },
        ]
        return self.write(
            manifest.evolve(
                status="queued",
                generation=generation,
                attempts=history,
                engine=engine,
                engine_run_id=None,
                finished_at=None,
                error=None,
            )
        )
