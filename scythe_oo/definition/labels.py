"""Worker labels that route an experiment's leaves to suitable machines."""

from __future__ import annotations

import enum


class WorkerLabel(enum.StrEnum):
    """Capabilities a worker advertises (SCYTHE_WORKER_HIGH_MEMORY, _HIGH_CPU, _HAS_GPU).

    An experiment whose ``worker_labels`` contains a label only runs on workers that have it.
    """

    HIGH_MEMORY = "high_memory"
    HIGH_CPU = "high_cpu"
    HAS_GPU = "has_gpu"
