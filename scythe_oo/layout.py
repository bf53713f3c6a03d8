"""RunLayout: every key of a run folder, SemVer, and version policies.

The layout keeps the seed tool's names (manifest.yml, specs.pq, final/scalars.pq, ...) so its
users find their files where they expect them.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import TYPE_CHECKING

import attrs

from scythe_oo.store.base import join_key

if TYPE_CHECKING:
    from scythe_oo.store.base import ArtifactStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder or surprise a shell, an S3 console or Windows.

    Names come from users' files and specs, so anything outside letters, digits, '.', '_' and
    '-' becomes '_', and leading dots are dropped ('..' and hidden files cannot arise).
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned[:200] or "file"


_SEMVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(?:-\d+)?$")
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"


@functools.total_ordering
@attrs.frozen(order=False)
class SemVer:
    """A run's version: major.minor.patch, written ``v1.2.3`` in folder names."""

    major: int
    minor: int
    patch: int

    @classmethod
    def parse(cls, text: str) -> SemVer:
        match = _SEMVER.match(text.strip())
        if not match:
            raise ValueError(f"version {text!r} is not of the form v1.2.3")
        return cls(*(int(g) for g in match.groups()))

    @classmethod
    def is_version(cls, text: str) -> bool:
        return bool(_SEMVER.match(text)) and text.startswith("v")

    def bump(self, policy: str) -> SemVer:
        if policy == "bumpmajor":
            return SemVer(self.major + 1, 0, 0)
        if policy == "bumpminor":
            return SemVer(self.major, self.minor + 1, 0)
        if policy == "bumppatch":
            return SemVer(self.major, self.minor, self.patch + 1)
        if policy == "keep":
            return self
        raise ValueError(
            f"version policy {policy!r} is not one of bumpmajor, bumpminor, bumppatch, keep"
        )

    def _key(self) -> tuple[int, int, int]:
        return (self.major, self.minor, self.patch)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SemVer):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}.{self.patch}"


FIRST_VERSION = SemVer(1, 0, 0)


def existing_versions(store: ArtifactStore, experiment: str) -> list[SemVer]:
    """Versions already in the store, ignoring folders that are not ``vX.Y.Z``."""
    return sorted(SemVer.parse(d) for d in store.list_dirs(experiment) if SemVer.is_version(d))


def resolve_version(
    store: ArtifactStore, experiment: str, requested: str | SemVer | None, policy: str
) -> SemVer:
    """An explicit version wins; otherwise apply the policy to the newest stored version.

    The first run of an experiment is v1.0.0 whatever the policy.
    """
    if isinstance(requested, SemVer):
        return requested
    if requested is not None and _SEMVER.match(requested):
        return SemVer.parse(requested)
    policy = requested or policy
    versions = existing_versions(store, experiment)
    if not versions:
        SemVer(0, 0, 0).bump(policy)  # validates the policy name even on a first run
        return FIRST_VERSION
    return versions[-1].bump(policy)


@attrs.frozen
class RunLayout:
    """The keys of one run folder: ``<experiment>/<vX.Y.Z>/<timestamp>/...``."""

    experiment: str
    version: SemVer
    timestamp: str

    @property
    def experiment_id(self) -> str:
        return join_key(self.experiment, str(self.version), self.timestamp)

    @property
    def root(self) -> str:
        return self.experiment_id

    def key(self, *parts: str) -> str:
        return join_key(self.root, *parts)

    @property
    def manifest(self) -> str:
        return self.key("manifest.yml")

    @property
    def io_spec(self) -> str:
        return self.key("experiment_io_spec.yml")

    @property
    def input_artifacts(self) -> str:
        return self.key("input_artifacts.yml")

    @property
    def specs(self) -> str:
        return self.key("specs.pq")

    def artifact(self, field: str, file_name: str) -> str:
        return self.key("artifacts", field, safe_name(file_name))

    def node_input(self, node: str) -> str:
        return self.key("scatter-gather", "input", f"{node}.pq")

    def node_output(self, node: str, table: str) -> str:
        return self.key("scatter-gather", "output", node, f"{table}.pq")

    def node_output_prefix(self, node: str) -> str:
        return self.key("scatter-gather", "output", node)

    def result_file(self, field: str, leaf_id: str, suffix: str) -> str:
        return self.key("results", field, safe_name(f"{leaf_id}{suffix}"))

    def leaf_dataframe(self, name: str, leaf_id: str) -> str:
        return self.key("results", "dataframes", name, f"{leaf_id}.pq")

    def final(self, table: str) -> str:
        return self.key("final", f"{table}.pq")

    @property
    def final_prefix(self) -> str:
        return self.key("final")

    @classmethod
    def from_experiment_id(cls, experiment_id: str) -> RunLayout:
        parts = experiment_id.strip("/").split("/")
        if len(parts) < 3 or not SemVer.is_version(parts[-2]) or not _TIMESTAMP.match(parts[-1]):
            raise ValueError(
                f"{experiment_id!r} is not a run folder id (<experiment>/<vX.Y.Z>/<timestamp>)"
            )
        return cls("/".join(parts[:-2]), SemVer.parse(parts[-2]), parts[-1])


def is_run_timestamp(name: str) -> bool:
    return bool(_TIMESTAMP.match(name))


def claim_run_folder(
    store: ArtifactStore, experiment: str, version: SemVer, placeholder: bytes
) -> RunLayout:
    """Create a new run folder whose name no other run shares, even within the same second.

    The manifest is created exclusively; when the timestamp is taken, a ``-2``, ``-3``... suffix
    is tried next.
    """
    stamp = dt.datetime.now(dt.UTC).strftime(TIMESTAMP_FORMAT)
    for attempt in range(1, 10_000):
        timestamp = stamp if attempt == 1 else f"{stamp}-{attempt}"
        layout = RunLayout(experiment, version, timestamp)
        if store.create_exclusive(layout.manifest, placeholder):
            return layout
    raise RuntimeError(f"could not claim a run folder for {experiment}/{version}/{stamp}")
