"""A node of the tree: its job (what to run) and its result (where its tables are).

Both are small enough for any queue's payload, however many specs lie below the node: specs
and tables travel through the store, and a job carries only names, numbers and its strategies
by value. The Dispatcher protocol is what an engine supplies to run a node's children and
leaves.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import attrs
import pyarrow as pa

from scythe_oo.definition.portable import from_portable, to_portable
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.runfolder.layout import ROOT_NODE, RunLayout
from scythe_oo.tree.collector import ResultCollector


@attrs.frozen(kw_only=True)
class NodeJob:
    """A node's whole input."""

    experiment: str
    experiment_id: str
    recursion: RecursionPolicy
    collector: ResultCollector = attrs.field(factory=ResultCollector)
    node: str = ROOT_NODE
    depth: int = 0
    generation: int = 1
    """Raised by ``ExperimentRun.retry_failed``: failures of older generations run again."""
    n_specs: int = -1
    """How many specs the node holds, when its parent knows (-1: read it from the store)."""
    split_above: int = 0
    """A node splits (as far as ``recursion`` allows) only when it holds more specs than
    this: the engine's ``split_above``, carried down the tree with the job."""

    def splits(self, n_specs: int) -> bool:
        return n_specs > self.split_above and self.recursion.splits(self.depth, n_specs)

    @property
    def layout(self) -> RunLayout:
        return RunLayout.from_experiment_id(self.experiment_id)

    def child(self, index: int, n_specs: int = -1) -> NodeJob:
        return attrs.evolve(
            self, node=f"{self.node}/{index}", depth=self.depth + 1, n_specs=n_specs
        )

    def specs_key(self) -> str:
        return self.layout.node_specs(self.node)

    def to_payload(self) -> dict[str, Any]:
        """Plain JSON-able values; strategies as ``{"type": ..., **fields}``."""
        payload = attrs.asdict(self, recurse=False)
        payload["recursion"] = to_portable(self.recursion)
        payload["collector"] = to_portable(self.collector)
        return payload

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> NodeJob:
        values = dict(payload)
        values["recursion"] = from_portable(values["recursion"], RecursionPolicy)
        values["collector"] = from_portable(values["collector"], ResultCollector)
        return cls(**values)


@attrs.frozen(kw_only=True)
class NodeResult:
    """What a node returns: the keys of its tables and its counts."""

    node: str
    tables: dict[str, str]
    succeeded: int
    failed: int
    generation: int = 1
    leaf_parent: bool = False
    """True when this node ran leaves itself (its counts are leaf counts, not subtotals)."""


OutcomeSink = Callable[[pa.Table], Awaitable[None]]

ROW_COLUMN = "__row__"
"""Column of the specs a base node hands to ``run_leaves``: each spec's row in the node's
specs file (a window's leaves are only part of it, and a resumed node skips some)."""
"""Told each batch of outcomes (an outcome table) as it arrives."""


class Dispatcher(Protocol):
    """How an engine runs the children and the leaves of a node."""

    async def run_nodes(self, jobs: Sequence[NodeJob]) -> list[NodeResult]: ...

    def admission(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """Held by a base node from reading its specs to writing its tables."""
        ...

    def splits(self, job: NodeJob, n_specs: int) -> bool:
        """Whether the node splits into children. The recursion policy sets the most a tree
        may split; an engine may keep a node whole when splitting would buy it nothing."""
        ...

    def leaf_plan_key(self, job: NodeJob) -> str | None:
        """Where to pin the node's list of leaves to dispatch, or None not to pin it.

        Durable engines replay a node after a crash and expect it to spawn exactly the same
        children; a node that consulted a journal grown in the meantime would not. Pinning
        the list (per node execution) keeps the replay identical.
        """
        ...

    async def run_leaves(self, job: NodeJob, specs: pa.Table, sink: OutcomeSink) -> pa.Table:
        """Run the leaves of ``specs`` (the node's specs file's columns, and ``ROW_COLUMN``:
        each spec's row in that file); pass outcomes to ``sink`` (the node's journal) as they
        arrive, unless the leaves journaled them themselves, and return them all (an outcome
        table, one row per spec)."""
        ...
