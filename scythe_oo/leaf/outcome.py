"""LeafOutcome: what one leaf reports back, thin enough for any queue's payload limit.

Scalars travel inline; files and user tables travel by reference (their store keys).
A failed leaf reports the error instead of results, so it can become a row of failures.pq.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from pydantic import ConfigDict, TypeAdapter

from scythe_oo.definition.redact import redact
from scythe_oo.runfolder.layout import leaf_id


@dataclasses.dataclass(slots=True)
class LeafOutcome:
    """The result of one spec: values on success, the error on failure.

    A plain slotted dataclass rather than a pydantic model: one is created, pickled, unpickled,
    journaled and collected per leaf, and for tiny simulations a model's validation and pickling
    cost more than the simulation itself. Where outcomes cross a JSON boundary (the journal,
    Hatchet payloads) pydantic still validates them, through ``OUTCOMES`` or an enclosing model.
    """

    sort_index: int
    leaf_id: str
    ok: bool
    scalars: dict[str, Any] = dataclasses.field(default_factory=dict)
    file_refs: dict[str, str | None] = dataclasses.field(default_factory=dict)
    dataframes: dict[str, str] = dataclasses.field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int = 1
    worker: str = ""
    wall_time: float = 0.0
    peak_rss_mib: float = 0.0
    """Peak resident memory of the worker process while the leaf's batch ran."""
    finished_at: float = 0.0
    """When the leaf ended, in seconds since the epoch."""
    log_tail: str | None = None
    """A failed leaf's last ``ctx.log`` lines (its whole log is logs/<leaf id>.log)."""

    @classmethod
    def failure(
        cls,
        sort_index: int,
        error_type: str,
        message: str,
        *,
        traceback: str | None = None,
        attempts: int = 1,
        worker: str = "",
        wall_time: float = 0.0,
        log_tail: str | None = None,
    ) -> LeafOutcome:
        """The outcome of a spec that failed: one row of failures.pq, with secrets masked."""
        return cls(
            sort_index=sort_index,
            leaf_id=leaf_id(sort_index),
            ok=False,
            error_type=error_type,
            error_message=clip(redact(message), MESSAGE_LIMIT),
            traceback=None if traceback is None else clip(redact(traceback), TRACEBACK_LIMIT),
            attempts=attempts,
            worker=worker,
            wall_time=wall_time,
            finished_at=time.time(),
            log_tail=None if log_tail is None else clip(redact(log_tail), MESSAGE_LIMIT),
        )

    def __reduce__(self) -> tuple[type[LeafOutcome], tuple[Any, ...]]:
        # Positional constructor arguments instead of the default slot-name mapping: pickling
        # a batch of outcomes back from a pool worker costs a fraction as much. The order is
        # the field order above.
        return LeafOutcome, (
            self.sort_index,
            self.leaf_id,
            self.ok,
            self.scalars,
            self.file_refs,
            self.dataframes,
            self.error_type,
            self.error_message,
            self.traceback,
            self.attempts,
            self.worker,
            self.wall_time,
            self.peak_rss_mib,
            self.finished_at,
            self.log_tail,
        )


MESSAGE_LIMIT = 4000
TRACEBACK_LIMIT = 12000
"""Characters of an error message and of a traceback kept in an outcome: outcomes must stay
small enough for any queue's payload limit."""


def clip(text: str, limit: int) -> str:
    """Keep both ends of a long text: the start says what failed, the end where."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


EXACT_JSON = ConfigDict(ser_json_inf_nan="constants")
"""JSON that keeps inf, -inf and NaN (as the literals Infinity, -Infinity and NaN, which
pydantic reads back), where plain JSON would turn them into null."""

OUTCOMES: TypeAdapter[list[LeafOutcome]] = TypeAdapter(list[LeafOutcome], config=EXACT_JSON)
"""Validates and serialises a batch of outcomes as JSON, every value exactly (the journal's
format)."""
