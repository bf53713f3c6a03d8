"""Experiments the benchmarks run (also served by `scythe-oo worker benchmarks.experiments`).

The leaves do (almost) nothing on purpose: whatever time or memory a run takes beyond the
baseline's is the framework's own overhead. The plain functions ``noop`` and ``wide`` are what
the baselines call, so both sides execute exactly the same leaf code.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from benchmarks.leaves import INPUTS, OUTPUTS, compute, inputs_of
from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    RecursionPolicy,
)


class NoopInput(ExperimentInputSpec):
    x: float


class NoopOutput(ExperimentOutputSpec):
    y: float


def noop(spec: NoopInput) -> NoopOutput:
    return NoopOutput(y=2 * spec.x)


class BenchNoop(Experiment[NoopInput, NoopOutput]):
    """Returns its input doubled: a leaf that costs nothing."""

    name = "bench_noop"
    recursion = RecursionPolicy(factor=10, max_depth=1)

    def run(self, spec: NoopInput, ctx: LeafContext) -> NoopOutput:
        return noop(spec)


class WideInput(ExperimentInputSpec):
    """Ten index fields of the usual kinds."""

    f0: float
    f1: float
    f2: float
    f3: float
    i0: int
    i1: int
    i2: int
    s0: str
    s1: str
    mode: Literal["a", "b", "c"]


class WideOutput(ExperimentOutputSpec):
    o0: float
    o1: float
    o2: float
    o3: float
    o4: float
    o5: float
    o6: int
    o7: int
    o8: int
    o9: int


def wide_spec(i: int) -> WideInput:
    return WideInput(
        f0=i * 0.5,
        f1=i / 7,
        f2=(i % 97) * 1.25,
        f3=-float(i),
        i0=i,
        i1=i % 1000,
        i2=i // 3,
        s0=f"site-{i % 500}",
        s1=f"case-{i}",
        mode=("a", "b", "c")[i % 3],
    )


def wide(spec: WideInput) -> WideOutput:
    return WideOutput(
        o0=spec.f0 + spec.f1,
        o1=spec.f1 * 2,
        o2=spec.f2 - 1,
        o3=spec.f3 / 2,
        o4=spec.f0 * spec.f2,
        o5=float(spec.i1),
        o6=spec.i0 + 1,
        o7=spec.i1 * 2,
        o8=spec.i2 % 7,
        o9=len(spec.s1),
    )


class BenchWide(Experiment[WideInput, WideOutput]):
    """Ten inputs, ten scalar outputs: the shape of a typical sweep's results table."""

    name = "bench_wide"
    recursion = RecursionPolicy(factor=10, max_depth=3)

    def run(self, spec: WideInput, ctx: LeafContext) -> WideOutput:
        return wide(spec)


class TenInput(ExperimentInputSpec):
    """Ten float inputs: the index of the peers' common results table."""

    x0: float
    x1: float
    x2: float
    x3: float
    x4: float
    x5: float
    x6: float
    x7: float
    x8: float
    x9: float


class TenOutput(ExperimentOutputSpec):
    y0: float
    y1: float
    y2: float
    y3: float
    y4: float
    y5: float
    y6: float
    y7: float
    y8: float
    y9: float


def ten_spec(i: int) -> TenInput:
    """Spec ``i`` of the common sweep (the same numbers as ``benchmarks.leaves.inputs_of``)."""
    return TenInput(**dict(zip(INPUTS, inputs_of(i), strict=True)))


class BenchTen(Experiment[TenInput, TenOutput]):
    """The common leaf of peers.py, cores.py, huge.py and hatchet_compare.py, no-op version.

    Subclasses only change ``spin_s``: they are separate classes (not a parameter) so that a
    Hatchet worker serving ``benchmarks.experiments`` has each of them by name.
    """

    name = "bench_ten"
    spin_s: ClassVar[float] = 0.0

    def run(self, spec: TenInput, ctx: LeafContext) -> TenOutput:
        x = [getattr(spec, f) for f in INPUTS]
        return TenOutput(**dict(zip(OUTPUTS, compute(x, self.spin_s), strict=True)))


class BenchTen2ms(BenchTen):
    """The common leaf after 2 ms of CPU."""

    name = "bench_ten_2ms"
    spin_s = 0.002


class BenchTen20ms(BenchTen):
    """The common leaf after 20 ms of CPU."""

    name = "bench_ten_20ms"
    spin_s = 0.020


TEN_BY_MS: dict[int, type[BenchTen]] = {0: BenchTen, 2: BenchTen2ms, 20: BenchTen20ms}
"""The common experiment for each leaf cost in milliseconds of CPU."""
