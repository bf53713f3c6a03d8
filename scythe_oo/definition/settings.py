"""SCYTHE_* settings, read from the environment when asked, never at import time.

The names are the seed tool's, so its users' deployments keep working.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import attrs

from scythe_oo.definition.timeouts import Timeouts, parse_duration

DEFAULT_LOCAL_ROOT = Path("scythe-data")
DEFAULT_CACHE_DIR = "~/.cache/scythe-oo/files"


def _env_duration(name: str, default: str) -> dt.timedelta:
    raw = os.environ.get(name, default)
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise ValueError(f"{name}={raw!r}: {exc}") from None


def _env_processes(name: str) -> int | None:
    raw = os.environ.get(name, "").strip().lower()
    if raw in ("", "auto"):
        return None
    if not raw.isdigit():
        raise ValueError(f"{name}={raw!r}: give a number of processes (0 for none) or 'auto'")
    return int(raw)


def _env_seconds(name: str) -> float | None:
    raw = os.environ.get(name, "").strip()
    return None if not raw else _env_duration(name, raw).total_seconds()


@attrs.frozen(kw_only=True)
class LeafTimeouts:
    """How long one leaf may run and wait for a worker, with nothing left unset."""

    execution: dt.timedelta
    schedule: dt.timedelta


@attrs.frozen(kw_only=True)
class Settings:
    """A snapshot of the SCYTHE_* environment."""

    storage_bucket: str | None
    """SCYTHE_STORAGE_BUCKET: when set, runs go to this S3 bucket instead of ./scythe-data."""
    storage_bucket_prefix: str
    """SCYTHE_STORAGE_BUCKET_PREFIX (default "scythe"): key prefix inside the bucket."""
    local_root: Path
    """SCYTHE_LOCAL_ROOT (default ./scythe-data): the LocalStore root when no bucket is set."""
    cache_dir: Path
    """SCYTHE_CACHE_DIR (default ~/.cache/scythe-oo/files): where fetched input files live."""
    timeout_scatter_gather_schedule: dt.timedelta
    timeout_scatter_gather_execution: dt.timedelta
    timeout_experiment_schedule: dt.timedelta
    timeout_experiment_execution: dt.timedelta
    journal_seconds: float
    """SCYTHE_JOURNAL_SECONDS (default 5): at most this long between journal writes of a node,
    which is how much finished work a crash can cost."""
    stall_seconds: float | None
    """SCYTHE_STALL_SECONDS: how long a distributed run may show no finished leaf before it is
    declared stalled (failed, for resume() to continue). Unset: the leaves' execution and
    schedule timeouts plus five minutes, the longest a healthy run can go quiet."""
    prepare_processes: int | None = None
    """SCYTHE_PREPARE_PROCESSES (default auto: one per CPU, at most 4, none on one CPU or
    while the caller runs other threads): how many forked helpers check and encode specs
    during allocate; 0 does it all in the caller's process."""

    def leaf_timeouts(self, timeouts: Timeouts) -> LeafTimeouts:
        """An experiment's timeouts with every unset part filled in from these settings."""
        return LeafTimeouts(
            execution=timeouts.execution or self.timeout_experiment_execution,
            schedule=timeouts.schedule or self.timeout_experiment_schedule,
        )

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            storage_bucket=os.environ.get("SCYTHE_STORAGE_BUCKET") or None,
            storage_bucket_prefix=os.environ.get("SCYTHE_STORAGE_BUCKET_PREFIX", "scythe"),
            local_root=Path(os.environ.get("SCYTHE_LOCAL_ROOT", str(DEFAULT_LOCAL_ROOT))),
            cache_dir=Path(os.environ.get("SCYTHE_CACHE_DIR") or DEFAULT_CACHE_DIR).expanduser(),
            timeout_scatter_gather_schedule=_env_duration(
                "SCYTHE_TIMEOUT_SCATTER_GATHER_SCHEDULE", "100m"
            ),
            timeout_scatter_gather_execution=_env_duration(
                "SCYTHE_TIMEOUT_SCATTER_GATHER_EXECUTION", "200m"
            ),
            timeout_experiment_schedule=_env_duration("SCYTHE_TIMEOUT_EXPERIMENT_SCHEDULE", "10m"),
            timeout_experiment_execution=_env_duration(
                "SCYTHE_TIMEOUT_EXPERIMENT_EXECUTION", "60m"
            ),
            journal_seconds=float(os.environ.get("SCYTHE_JOURNAL_SECONDS", "5")),
            stall_seconds=_env_seconds("SCYTHE_STALL_SECONDS"),
            prepare_processes=_env_processes("SCYTHE_PREPARE_PROCESSES"),
        )
