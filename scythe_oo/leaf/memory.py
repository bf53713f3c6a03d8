"""Peak memory of a worker process while it runs leaves.

The report and the estimate show how much memory a leaf needs, which sizes the machines of a
sweep. Linux keeps a process's high-water mark of resident memory (VmHWM) and lets a process
reset it, so a batch of leaves resets it, runs, and reads it: about 50 us per batch. Leaves
batched together share their batch's figure (an upper bound for each); a leaf long enough to
run alone gets its own. Elsewhere, the process's lifetime peak is the best there is.
"""

from __future__ import annotations

import contextlib
import resource
import sys
from pathlib import Path

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak() -> None:
    """Start measuring a new peak (Linux only; elsewhere the lifetime peak is kept)."""
    with contextlib.suppress(OSError):
        _CLEAR_REFS.write_text("5")


def peak_rss_mib() -> float:
    """The peak resident memory since ``reset_peak``, in MiB."""
    try:
        for line in _STATUS.read_bytes().splitlines():
            if line.startswith(b"VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
