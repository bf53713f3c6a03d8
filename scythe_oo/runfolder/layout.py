"""RunLayout: every key of a run folder, and nothing else builds one.

``<experiment>/<vX.Y.Z>/<timestamp>/`` holds the seed tool's files (manifest.yml, specs.pq,
final/scalars.pq, ...). Every layer that reads or writes a run folder asks this class for the
key, so the layout can be read in one place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from typing import TYPE_CHECKING

import attrs

from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import join_key

if TYPE_CHECKING:
    from scythe_oo.storage.base import ArtifactStore

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}(?:-\d+)?$")
TIMESTAMP_FORMAT = "%Y-%m-%d_%H-%M-%S"

ROOT_NODE = "root"
"""The tree's root node; every other node is ``root/<i>/<j>...``."""

NODE_DONE = "_node.json"
"""A node's checkpoint marker, written last in its output folder."""


def safe_name(name: str) -> str:
    """A file name that cannot leave its folder or surprise a shell, an S3 console or Windows.

    Names come from users' files and specs, so anything outside letters, digits, '.', '_' and
    '-' becomes '_', and leading dots are dropped ('..' and hidden files cannot arise).
    """
    cleaned = _UNSAFE.sub("_", name).lstrip(".")
    return cleaned[:200] or "file"


def leaf_id(sort_index: int) -> str:
    """A leaf's id, derived from its spec's position, so a rerun overwrites, never duplicates."""
    return f"{sort_index:09d}"


def is_run_timestamp(name: str) -> bool:
    return bool(_TIMESTAMP.match(name))


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

    # -- written by allocate ------------------------------------------------------------

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

    # -- the scatter/gather tree ----------------------------------------------------------

    def node_specs(self, node: str) -> str:
        """A node's slice of specs; the root's is specs.pq itself."""
        return (
            self.specs if node == ROOT_NODE else self.key("scatter-gather", "input", f"{node}.pq")
        )

    def node_output(self, node: str, table: str) -> str:
        return self.key("scatter-gather", "output", node, f"{table}.pq")

    def node_part(self, node: str, window: int, table: str) -> str:
        """A window of a large base node's table, before the windows are merged."""
        return self.key("scatter-gather", "output", node, "parts", f"{window:06d}", f"{table}.pq")

    def node_output_prefix(self, node: str) -> str:
        return self.key("scatter-gather", "output", node)

    @property
    def node_outputs(self) -> str:
        """The folder of every node's tables and checkpoint."""
        return self.key("scatter-gather", "output")

    def node_done(self, node: str) -> str:
        return self.key("scatter-gather", "output", node, NODE_DONE)

    def journal_prefix(self, node: str) -> str:
        return self.key("scatter-gather", "journal", node)

    @property
    def journals(self) -> str:
        """The folder of every node's leaf journal."""
        return self.key("scatter-gather", "journal")

    def leaf_plan(self, node: str, execution: str) -> str:
        """The leaves one execution of a node dispatches (durable engines replay it)."""
        return self.key("scatter-gather", "plan", node, f"{execution}.json")

    # -- what leaves write ------------------------------------------------------------------

    def result_file(self, field: str, leaf: str, suffix: str) -> str:
        return self.key("results", field, safe_name(f"{leaf}{suffix}"))

    def leaf_dataframe(self, name: str, leaf: str) -> str:
        return self.key("results", "dataframes", name, f"{leaf}.pq")

    def leaf_log(self, leaf: str) -> str:
        """The ``ctx.log`` lines of one leaf (bounded; see leaf/logbook.py)."""
        return self.key("logs", f"{leaf}.log")

    def leaf_table_column(self, name: str, column: str) -> str:
        """Where the first leaf to return a user table's column records its type."""
        digest = hashlib.sha256(column.encode()).hexdigest()[:16]
        return self.key("results", "dataframes", name, "_columns", f"{digest}.json")

    # -- final tables -----------------------------------------------------------------------

    def final(self, table: str) -> str:
        return self.key("final", f"{table}.pq")

    @property
    def final_prefix(self) -> str:
        return self.key("final")

    @property
    def final_output(self) -> str:
        """An included Hatchet workflow's output, as JSON."""
        return self.key("final", "output.json")

    @classmethod
    def from_experiment_id(cls, experiment_id: str) -> RunLayout:
        parts = experiment_id.strip("/").split("/")
        if len(parts) < 3 or not SemVer.is_version(parts[-2]) or not _TIMESTAMP.match(parts[-1]):
            raise ValueError(
                f"{experiment_id!r} is not a run folder id (<experiment>/<vX.Y.Z>/<timestamp>)"
            )
        return cls("/".join(parts[:-2]), SemVer.parse(parts[-2]), parts[-1])


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


def run_folders(store: ArtifactStore, experiment: str) -> list[RunLayout]:
    """Every run folder of ``experiment`` that has a manifest, newest first."""
    found: list[tuple[str, SemVer, RunLayout]] = []
    for version_dir in store.list_dirs(experiment):
        if not SemVer.is_version(version_dir):
            continue
        version = SemVer.parse(version_dir)
        for stamp in store.list_dirs(join_key(experiment, version_dir)):
            if not is_run_timestamp(stamp):
                continue
            layout = RunLayout(experiment, version, stamp)
            if store.exists(layout.manifest):
                found.append((_stamp_key(stamp), version, layout))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [layout for _, _, layout in found]


def _stamp_key(stamp: str) -> str:
    """Sortable form of a folder name: same-second runs carry a -2, -3... suffix."""
    if stamp.count("-") > 4:
        base, suffix = stamp.rsplit("-", 1)
        return f"{base}#{int(suffix):06d}"
    return f"{stamp}#000001"
