"""What crosses the Hatchet boundary: thin, validated payloads.

A node's input is its job (names, numbers and its strategies by value) and its output the store
keys of its tables; specs and tables travel through the store. A leaf task's input is a batch
of specs, typed per experiment so that Hatchet's dashboard shows them, and its output the
leaves' outcomes: scalars inline, files and tables by key. A batch too large for that (many
tiny leaves) names rows of its node's specs file instead, and its outcomes come back as the
key of the journal file its process wrote (see ``spec_rows``).
"""

from __future__ import annotations

from typing import Any

import attrs
from pydantic import BaseModel, create_model

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.leaf.outcome import EXACT_JSON, LeafOutcome
from scythe_oo.runfolder.layout import ROOT_NODE
from scythe_oo.tree.job import NodeJob, NodeResult


class NodeTaskInput(BaseModel):
    """Input of a scatter/gather node: its job, and where the run's store is."""

    job: dict[str, Any]
    store: dict[str, str]

    def node_job(self) -> NodeJob:
        return NodeJob.from_payload(self.job)

    @classmethod
    def of(cls, job: NodeJob, store: dict[str, str]) -> NodeTaskInput:
        return cls(job=job.to_payload(), store=store)


class NodeTaskOutput(BaseModel):
    """Output of a node: its result (table keys and counts)."""

    result: dict[str, Any]

    def node_result(self) -> NodeResult:
        return NodeResult(**self.result)

    @classmethod
    def of(cls, result: NodeResult) -> NodeTaskOutput:
        return cls(result=attrs.asdict(result))


class LeafTaskInput(BaseModel):
    """Common part of every experiment's leaf input; ``specs`` is typed per experiment."""

    experiment_id: str
    store: dict[str, str]
    node: str = ROOT_NODE
    generation: int = 1
    """The run's generation (see NodeJob): the leaves journal their outcomes under it."""
    one_off: bool = False
    """A single-spec run: the leaf task itself writes final/ and the manifest."""
    specs_key: str = ""
    """With ``rows``: the node's specs file the batch's specs are read from."""
    rows: list[tuple[int, int]] = []
    """``[start, stop)`` runs of rows of ``specs_key``, for a batch whose specs are not inline."""


class LeafTaskOutput(BaseModel):
    model_config = EXACT_JSON  # an output of inf must come back as inf, not as null

    outcomes: list[LeafOutcome] = []
    outcomes_key: str | None = None
    """Where a batch named by rows left its outcome table (a journal file), instead of inline."""


def leaf_input_model(cls: AnyExperiment) -> type[LeafTaskInput]:
    """The leaf task's input validator: the common fields plus ``specs: list[InputT]``."""
    model: type[LeafTaskInput] = create_model(
        f"{cls.schema.input_type.__name__}LeafInput",
        __base__=LeafTaskInput,
        specs=(list[cls.schema.input_type], []),  # type: ignore[name-defined]
    )
    return model


def as_node_output(output: Any) -> NodeTaskOutput:
    if isinstance(output, NodeTaskOutput):
        return output
    return NodeTaskOutput.model_validate(output)


def as_leaf_output(output: Any) -> LeafTaskOutput:
    if isinstance(output, LeafTaskOutput):
        return output
    return LeafTaskOutput.model_validate(output)
