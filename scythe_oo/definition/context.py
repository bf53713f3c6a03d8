"""LeafContext: what ``run`` may use besides its spec.

The engine builds one per leaf. It is a plain value with a few callables, so a leaf can also be
run by hand (in a debugger, say) with a context whose callables do the local thing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import attrs

logger = logging.getLogger("scythe_oo.leaf")


@attrs.define(kw_only=True)
class LeafContext:
    """A scratch directory, the leaf's position and attempt, and a logger.

    ``workdir`` is a fresh directory for this leaf only, removed after the leaf finishes; write
    output files there and return their Paths in FileReference fields.
    """

    sort_index: int
    experiment_id: str
    leaf_id: str
    attempt: int = 1
    worker_name: str = "local"
    fetch: Callable[[str], Path] = attrs.field(repr=False)
    upload: Callable[[str, Path], str] = attrs.field(repr=False)
    log_sink: Callable[[str], None] | None = attrs.field(default=None, repr=False)
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
        """Send a line to the run's log (Hatchet's task log on the distributed engine)."""
        line = f"[{self.experiment_id} #{self.sort_index}] {message}"
        if self.log_sink is not None:
            self.log_sink(line)
        logger.info(line)
