"""Custom strategies and an experiment to carry them, for the strategy tests on both engines.

They live in an importable module, as the README asks of users' strategies, because Hatchet
workers rebuild a strategy from its import path.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import Field

from scythe_oo import (
    ArtifactStore,
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    RecursionPolicy,
    ResultCollector,
)


class PairInput(ExperimentInputSpec):
    a: float = Field(ge=0, le=1_000)
    b: float = Field(gt=0, le=1_000)
    fail: bool = False


class PairOutput(ExperimentOutputSpec):
    total: float
    product: float


class Pair(Experiment[PairInput, PairOutput]):
    """Adds and multiplies two numbers; fails on request."""

    name = "strategy_pair"

    def run(self, spec: PairInput, ctx: LeafContext) -> PairOutput:
        if spec.fail:
            raise ValueError(f"spec {spec.sort_index} was asked to fail")
        return PairOutput(total=spec.a + spec.b, product=spec.a * spec.b)


@attrs.frozen(kw_only=True)
class WithMean(ResultCollector):
    """Adds ``mean = total / divisor`` to every base node's scalars."""

    divisor: float = 2.0

    def leaf_table(self, name: str, table: pa.Table) -> pa.Table:
        if name != "scalars":
            return table
        return table.append_column("mean", pc.divide(table["total"], self.divisor))


class PairWithMean(Pair):
    """The same experiment, with the custom collector as a class attribute."""

    name = "strategy_pair_with_mean"
    collector = WithMean(divisor=4.0)


@attrs.frozen(kw_only=True)
class Chunked(RecursionPolicy):
    """One level of children of at most ``chunk`` specs each."""

    chunk: int = 5

    def fan_out(self, depth: int, n_specs: int) -> int:
        return math.ceil(n_specs / self.chunk) if depth == 0 and n_specs > self.chunk else 0


@attrs.frozen(kw_only=True)
class NeverSplit(RecursionPolicy):
    """Every leaf is dispatched by the root, whatever ``factor`` and ``max_depth`` say."""

    def fan_out(self, depth: int, n_specs: int) -> int:
        return 0


@attrs.frozen(kw_only=True)
class WholeMerge(ResultCollector):
    """Merges children with a ``combine`` of its own, as users wrote it before ``reshapes``:
    each table read whole, concatenated and sorted. Its root tables reach final/ by copy."""

    def combine(
        self,
        store: ArtifactStore,
        sources: Mapping[str, Sequence[str]],
        destinations: Mapping[str, str],
    ) -> None:
        for name, keys in sources.items():
            parts = [pq.read_table(pa.BufferReader(store.get_bytes(key))) for key in keys]
            table = pa.concat_tables(parts, promote_options="permissive")
            if "sort_index" in table.column_names:
                table = table.sort_by("sort_index")
            buffer = io.BytesIO()
            pq.write_table(table, buffer)
            store.put_bytes(destinations[name], buffer.getvalue())
