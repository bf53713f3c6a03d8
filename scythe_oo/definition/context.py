"""LeafContext: what ``run`` may use besides its spec.

The engine builds one per leaf. It is a plain value with a few callables, each with a default
that does the local thing, so ``LeafContext()`` alone is enough to call ``run`` by hand (in a
debugger, say). ``MyExperiment.debug(spec)`` and ``run.replay(i)`` do that with the real hooks.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import attrs

logger = logging.getLogger("scythe_oo.leaf")


def local_fetch(uri: str) -> Path:
    """A local file from a path or a file:// URI: what a context built by hand can fetch."""
    parts = urlsplit(uri)
    if parts.scheme not in ("", "file"):
        raise ValueError(
            f"this LeafContext cannot fetch {uri!r}: it only finds local files. "
            "MyExperiment.debug(spec) fetches remote inputs through the file cache."
        )
    path = Path(unquote(parts.path) if parts.scheme == "file" else uri)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {uri}")
    return path


def keep_in_place(field: str, path: Path) -> str:
    """An output file's URI where it lies: what a context built by hand "uploads"."""
    return path.resolve().as_uri()


@attrs.define(kw_only=True)
class LeafContext:
    """A scratch directory, the leaf's position and attempt, and a logger.

    ``workdir`` is a fresh directory for this leaf only, removed after the leaf finishes; write
    output files there and return their Paths in FileReference fields.
    """

    sort_index: int = 0
    experiment_id: str = "debug"
    leaf_id: str = attrs.field(
        default=attrs.Factory(lambda self: f"{self.sort_index:09d}", takes_self=True)
    )
    attempt: int = 1
    worker_name: str = "local"
    fetch: Callable[[str], Path] = attrs.field(default=local_fetch, repr=False)
    """URI -> local Path. By default only local files (paths and file:// URIs) are found."""
    upload: Callable[[str, Path], str] = attrs.field(default=keep_in_place, repr=False)
    """(field, local file) -> URI. By default the file stays where it is."""
    log_sink: Callable[[str], None] | None = attrs.field(default=None, repr=False)
    """Gets each ``log`` line with the leaf's name in front (Hatchet's task log)."""
    log_keeper: Callable[[str], None] | None = attrs.field(default=None, repr=False)
    """Gets each ``log`` message as it was given (the leaf's log in the run folder)."""
    workdir_prefix: str = attrs.field(default="scythe-leaf-", repr=False)
    _workdir: Path | None = attrs.field(default=None, init=False, repr=False)

    @property
    def workdir(self) -> Path:
        """Created on first use: most simulations never touch the disk, and a directory per
        leaf would otherwise cost more than a tiny simulation itself."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=self.workdir_prefix))
        return self._workdir

    def cleanup(self) -> None:
        """Remove the workdir, if the leaf created one; the next leaf gets a fresh one."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def log(self, message: str) -> None:
        """Add a line to this leaf's log: kept in the run folder (``run.logs(sort_index)``,
        ``scythe-oo logs RUN SORT_INDEX``), sent to Hatchet's task log on that engine, and to
        the ``scythe_oo.leaf`` logger."""
        if self.log_keeper is not None:
            self.log_keeper(message)
        line = f"[{self.experiment_id} #{self.sort_index}] {message}"
        if self.log_sink is not None:
            self.log_sink(line)
        logger.info(line)
