"""Pausing the cyclic garbage collector around bulk object creation.

Building 10^5 small models triggers a full collection every few hundred allocations, and each
one scans every object still alive: validating 20,000 specs took five times longer with the
collector running than without. None of these loops create reference cycles, so reference
counting frees everything they drop.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Disable the cyclic collector for the block (re-entrant; restores the previous state)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
