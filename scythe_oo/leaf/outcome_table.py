"""Leaf outcomes as Arrow tables: how they travel from workers to nodes, and are journaled.

A node may gather 10^6 outcomes; as Python objects that is a million allocations, pickles and
dictionaries for the driver to handle, which caps a sweep at the speed of one core. As a table
(one row per leaf, one column per output and per bookkeeping field) a batch costs the same
however many leaves it holds, and gathering is column-wise from end to end.

Columns: ``sort_index``, ``ok``, then ``out:<field>`` for each scalar output and
``file:<field>`` for each file output (null on failed rows), then the user tables' keys (JSON),
the error (type, message, traceback, the last lines the leaf logged), ``attempts``, ``worker``,
``wall_time``, ``peak_rss_mib`` and ``finished_at`` (seconds since the epoch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from scythe_oo.definition.plain import values_of
from scythe_oo.definition.redact import redact
from scythe_oo.definition.schema import ExperimentSchema, typed_column
from scythe_oo.leaf.outcome import MESSAGE_LIMIT, TRACEBACK_LIMIT, LeafOutcome, clip
from scythe_oo.runfolder.layout import leaf_id

OUT = "out:"
FILE = "file:"

BOOKKEEPING: dict[str, pa.DataType] = {
    "dataframes": pa.string(),
    "error_type": pa.string(),
    "error_message": pa.string(),
    "traceback": pa.string(),
    "attempts": pa.int64(),
    "worker": pa.string(),
    "wall_time": pa.float64(),
    "peak_rss_mib": pa.float64(),
    "finished_at": pa.float64(),
    "log_tail": pa.string(),
}


def outcome_schema(schema: ExperimentSchema) -> pa.Schema:
    """The columns of an experiment's outcome tables."""
    return pa.schema(
        [
            ("sort_index", pa.int64()),
            ("ok", pa.bool_()),
            *((OUT + p.name, p.arrow_type) for p in schema.scalar_outputs),
            *((FILE + p.name, pa.string()) for p in schema.file_outputs),
            *BOOKKEEPING.items(),
        ]
    )


class OutcomeRecorder:
    """Collects the outcomes of a batch of leaves, column by column, as they finish."""

    def __init__(self, schema: ExperimentSchema) -> None:
        self.schema = schema
        self.plans = (*schema.scalar_outputs, *schema.file_outputs)
        self.fetch = values_of([plan.name for plan in self.plans])
        self.sort_index: list[int] = []
        self.outputs: list[tuple[Any, ...] | None] = []  # each output's values, in plan order
        self.dataframes: list[str | None] = []
        self.error_type: list[str | None] = []
        self.error_message: list[str | None] = []
        self.traceback: list[str | None] = []
        self.attempts: list[int] = []
        self.worker: list[str] = []
        self.wall_time: list[float] = []
        self.finished_at: list[float] = []
        self.log_tail: list[str | None] = []

    def __len__(self) -> int:
        return len(self.sort_index)

    def ok(
        self,
        sort_index: int,
        output: Any,
        dataframes: dict[str, str] | None,
        attempt: int,
        worker: str,
        wall_time: float,
    ) -> None:
        self.sort_index.append(sort_index)
        # Its values as they are now: the output may be the very object ``run`` returned,
        # which the user's code could change after (reused for the next leaf, say).
        self.outputs.append(self.fetch(output.__dict__))
        self.dataframes.append(json.dumps(dataframes) if dataframes else None)
        self.error_type.append(None)
        self.error_message.append(None)
        self.traceback.append(None)
        self.attempts.append(attempt)
        self.worker.append(worker)
        self.wall_time.append(wall_time)
        self.finished_at.append(time.time())
        self.log_tail.append(None)

    def fail(
        self,
        sort_index: int,
        error_type: str,
        message: str,
        traceback: str | None,
        attempt: int,
        worker: str,
        wall_time: float,
        log_tail: str | None = None,
    ) -> None:
        """A failure row; the message, traceback and log tail are clipped and have secrets
        masked."""
        self.sort_index.append(sort_index)
        self.outputs.append(None)
        self.dataframes.append(None)
        self.error_type.append(error_type)
        self.error_message.append(clip(redact(message), MESSAGE_LIMIT))
        self.traceback.append(
            None if traceback is None else clip(redact(traceback), TRACEBACK_LIMIT)
        )
        self.attempts.append(attempt)
        self.worker.append(worker)
        self.wall_time.append(wall_time)
        self.finished_at.append(time.time())
        self.log_tail.append(None if log_tail is None else clip(redact(log_tail), MESSAGE_LIMIT))

    def table(self, peak_rss_mib: float = 0.0) -> pa.Table:
        """The batch as an outcome table; every leaf shares the batch's peak memory."""
        outputs = self.outputs
        columns: list[pa.Array] = [
            pa.array(self.sort_index, type=pa.int64()),
            pa.array([o is not None for o in outputs], type=pa.bool_()),
        ]
        failed = (None,) * len(self.plans)
        # Rows to columns in one call: zip transposes the tuples in C.
        values = list(zip(*(failed if o is None else o for o in outputs), strict=True))
        for at, plan in enumerate(self.plans):
            columns.append(typed_column(plan, list(values[at]) if values else []))
        n = len(outputs)
        columns += [
            pa.array(self.dataframes, type=pa.string()),
            pa.array(self.error_type, type=pa.string()),
            pa.array(self.error_message, type=pa.string()),
            pa.array(self.traceback, type=pa.string()),
            pa.array(self.attempts, type=pa.int64()),
            pa.array(self.worker, type=pa.string()),
            pa.array(self.wall_time, type=pa.float64()),
            pa.repeat(pa.scalar(peak_rss_mib, pa.float64()), n),
            pa.array(self.finished_at, type=pa.float64()),
            pa.array(self.log_tail, type=pa.string()),
        ]
        return pa.Table.from_arrays(columns, schema=outcome_schema(self.schema))


def outcome_table(schema: ExperimentSchema, outcomes: Iterable[LeafOutcome]) -> pa.Table:
    """LeafOutcome objects (from a Hatchet payload, or made by a dispatcher for a leaf that
    never reported) as an outcome table."""
    rows = list(outcomes)
    columns: dict[str, list[Any]] = {name: [] for name in outcome_schema(schema).names}
    for outcome in rows:
        columns["sort_index"].append(outcome.sort_index)
        columns["ok"].append(outcome.ok)
        for plan in schema.scalar_outputs:
            columns[OUT + plan.name].append(outcome.scalars.get(plan.name))
        for plan in schema.file_outputs:
            columns[FILE + plan.name].append(outcome.file_refs.get(plan.name))
        columns["dataframes"].append(json.dumps(outcome.dataframes) if outcome.dataframes else None)
        for name in (
            "error_type",
            "error_message",
            "traceback",
            "attempts",
            "worker",
            "wall_time",
            "peak_rss_mib",
            "finished_at",
            "log_tail",
        ):
            columns[name].append(getattr(outcome, name))
    plans = {OUT + p.name: p for p in schema.scalar_outputs}
    arrays = []
    for field in outcome_schema(schema):
        values = columns[field.name]
        output = plans.get(field.name)
        arrays.append(
            pa.array(values, field.type) if output is None else typed_column(output, values)
        )
    return pa.Table.from_arrays(arrays, schema=outcome_schema(schema))


def outcomes_of(schema: ExperimentSchema, table: pa.Table) -> list[LeafOutcome]:
    """An outcome table as LeafOutcome objects (the Hatchet payload's form)."""
    data = table.to_pydict()
    outcomes = []
    for row in range(table.num_rows):
        index = data["sort_index"][row]
        frames = data["dataframes"][row]
        outcomes.append(
            LeafOutcome(
                sort_index=index,
                leaf_id=leaf_id(index),
                ok=data["ok"][row],
                scalars={p.name: data[OUT + p.name][row] for p in schema.scalar_outputs},
                file_refs={p.name: data[FILE + p.name][row] for p in schema.file_outputs},
                dataframes=json.loads(frames) if frames else {},
                error_type=data["error_type"][row],
                error_message=data["error_message"][row],
                traceback=data["traceback"][row],
                attempts=data["attempts"][row],
                worker=data["worker"][row],
                wall_time=data["wall_time"][row],
                peak_rss_mib=data["peak_rss_mib"][row],
                finished_at=data["finished_at"][row],
                log_tail=data["log_tail"][row],
            )
        )
    return outcomes


def empty_outcomes(schema: ExperimentSchema) -> pa.Table:
    return outcome_schema(schema).empty_table()
