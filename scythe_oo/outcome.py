"""LeafOutcome: what one leaf reports back, thin enough for any queue's payload limit.

Scalars travel inline; files and user tables travel by reference (their store keys).
A failed leaf reports the error instead of results, so it can become a row of failures.pq.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class LeafOutcome(BaseModel):
    """The result of one spec: values on success, the error on failure."""

    sort_index: int
    leaf_id: str
    ok: bool
    scalars: dict[str, Any] = Field(default_factory=dict)
    file_refs: dict[str, str | None] = Field(default_factory=dict)
    dataframes: dict[str, str] = Field(default_factory=dict)
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int = 1
    worker: str = ""
    wall_time: float = 0.0
