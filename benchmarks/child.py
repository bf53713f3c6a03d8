"""What a measured child process reports, and how: standard library only.

Kept apart from ``benchmarks.harness`` (which needs psutil) so that a child running in another
environment, such as the seed tool's venv (``benchmarks.seed_driver``), can use it too.
"""

from __future__ import annotations

import json
import resource
import sys
from typing import Any


def peak_rss_mib() -> dict[str, float]:
    """This process's peak RSS and the largest of its reaped children's."""
    kib = 1024  # ru_maxrss is in KiB on Linux
    return {
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib,
        "children_peak_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib,
    }


def emit(report: dict[str, Any]) -> None:
    """The last line of stdout is the child's report (``harness.run_child`` reads it)."""
    print(json.dumps(report, default=str))
    sys.stdout.flush()
