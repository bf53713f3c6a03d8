"""LeafHost: the experiment instances of one worker process, set up once and torn down at exit.

``setup`` loads what every leaf of a process reuses (a model, a weather cache), so it runs once
per process, not once per leaf. As Lightning runs its hooks, the framework, not the user, calls
``setup`` and ``teardown``, in a fixed order, and teardown runs even after failures.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util
import os
import threading
from typing import Any

from scythe_oo.definition.base import AnyExperiment, ExperimentBase
from scythe_oo.leaf.user_tables import ColumnTypes
from scythe_oo.storage.cache import FileCache

log = logging.getLogger("scythe_oo.leaf")


class LeafHost:
    """One per process: experiment instances that have run ``setup``, torn down at exit."""

    def __init__(self) -> None:
        self._instances: dict[type[Any], ExperimentBase[Any, Any]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.cache = FileCache()
        self.column_types: ColumnTypes = {}
        """Types of user-table columns this process has seen fixed, so each is read once."""
        atexit.register(self.shutdown)
        multiprocessing.util.Finalize(self, self.shutdown, exitpriority=100)

    def instance(self, cls: AnyExperiment) -> ExperimentBase[Any, Any]:
        with self._lock:
            found = self._instances.get(cls)
            if found is None:
                found = cls()
                found.setup()
                self._instances[cls] = found
            return found

    def shutdown(self) -> None:
        """Tear down every experiment set up in this process, once."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            try:
                instance.teardown()
            except Exception:
                log.exception("teardown of %s failed", type(instance).__name__)


_HOST: LeafHost | None = None


def leaf_host() -> LeafHost:
    """The process's LeafHost; a forked child gets its own, not its parent's."""
    global _HOST
    if _HOST is None or _HOST._pid != os.getpid():
        _HOST = LeafHost()
    return _HOST
