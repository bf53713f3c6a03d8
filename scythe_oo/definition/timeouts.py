"""Durations users write as "5m" or "2h", and the per-experiment timeout pair."""

from __future__ import annotations

import datetime as dt
import math
import re

import attrs

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def parse_duration(value: str | int | float | dt.timedelta) -> dt.timedelta:
    """Accept 90, "90s", "5m", "2h", "1d" or a timedelta; the seed tool's settings use "10m"."""
    if isinstance(value, dt.timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, bool):
        raise ValueError(f"duration {value!r} is a bool; give seconds or a string like '5m'")
    elif isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"duration {value!r} is not understood; write e.g. 30s, 5m, 2h or 1d")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration {value!r} must be positive and finite, e.g. 90 or '5m'")
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {value!r} is too long; give at most a few years") from None


def _optional_duration(value: str | int | float | dt.timedelta | None) -> dt.timedelta | None:
    return None if value is None else parse_duration(value)


@attrs.frozen(kw_only=True)
class Timeouts:
    """How long a leaf may wait in the queue (schedule) and run (execution).

    None means: use SCYTHE_TIMEOUT_EXPERIMENT_SCHEDULE / _EXECUTION, else the defaults.
    """

    execution: dt.timedelta | None = attrs.field(default=None, converter=_optional_duration)
    schedule: dt.timedelta | None = attrs.field(default=None, converter=_optional_duration)
