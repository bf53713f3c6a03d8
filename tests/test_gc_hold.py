"""allocate reads the caller's specs with the collector's full collections held off.

A generator of 10^6 specs ran 41 full collections (a quarter of allocate's checking pass), so
``prepare_specs`` holds them off; young collections go on, since the caller's code may make
cycles. These tests hold its promises: no full collection while specs are read, young cyclic
garbage still collected, the threshold given back exactly whoever holds it, and a process
forked inside the hold not held for life.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from scythe_oo import Experiment, ExperimentInputSpec, ExperimentOutputSpec, LeafContext
from scythe_oo.driver.prepare import prepare_specs
from scythe_oo.driver.sources import spec_chunks
from scythe_oo.tree.gcpause import HELD_OFF, no_full_collections


class HeldIn(ExperimentInputSpec):
    a: float
    b: int


class HeldOut(ExperimentOutputSpec):
    y: float


class Held(Experiment[HeldIn, HeldOut]):
    name = "tgc_held"

    def run(self, spec: HeldIn, ctx: LeafContext) -> HeldOut:
        return HeldOut(y=spec.a)


class Node:
    """Half of a reference cycle."""

    def __init__(self) -> None:
        self.other: Any = None


def test_reading_a_large_generator_runs_no_full_collection(tmp_path: Path) -> None:
    full: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(1)

    def specs() -> Iterator[HeldIn]:
        for i in range(150_000):
            yield HeldIn(a=i / 7, b=i)

    before = gc.get_threshold()
    gc.callbacks.append(count)
    try:
        prepared = prepare_specs(Held, spec_chunks(Held, specs()), tmp_path, processes=0)
    finally:
        gc.callbacks.remove(count)
    assert prepared.count == 150_000
    assert full == []
    assert gc.get_threshold() == before


def test_young_cycles_are_still_collected_while_held() -> None:
    assert gc.isenabled()
    with no_full_collections():
        assert gc.get_threshold()[2] == HELD_OFF
        first = Node()
        first.other = Node()
        first.other.other = first
        gone = weakref.ref(first)
        del first
        # Enough new containers to pass the youngest generation's threshold several times.
        churn = [[i] for i in range(20 * max(gc.get_threshold()[0], 1))]
        assert gone() is None
        del churn


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=8), st.integers(1, 5000))
def test_threads_holding_and_leaving_in_any_order_give_the_threshold_back(
    orders: list[int], oldest: int
) -> None:
    young, middle, saved = gc.get_threshold()
    gc.set_threshold(young, middle, oldest)
    try:
        leave = [threading.Event() for _ in orders]
        inside = threading.Barrier(len(orders) + 1)

        def hold(at: int) -> None:
            with no_full_collections():
                inside.wait()
                leave[at].wait()

        threads = [threading.Thread(target=hold, args=(at,)) for at in range(len(orders))]
        for thread in threads:
            thread.start()
        inside.wait()
        seen = gc.get_threshold()[2]
        # Release them in an order drawn from ``orders`` (ties by position).
        for at in sorted(range(len(orders)), key=lambda i: (orders[i], i)):
            leave[at].set()
            threads[at].join()
        assert seen == HELD_OFF
        assert gc.get_threshold() == (young, middle, oldest)
    finally:
        gc.set_threshold(young, middle, saved)


def _report_threshold(sink: Any) -> None:
    sink.send(gc.get_threshold())


def test_a_process_forked_inside_the_hold_starts_with_full_collections_on() -> None:
    fork = multiprocessing.get_context("fork")
    ours, theirs = fork.Pipe()
    before = gc.get_threshold()
    with no_full_collections():
        child = fork.Process(target=_report_threshold, args=(theirs,))
        child.start()
        seen = ours.recv() if ours.poll(60) else None
        child.join(60)
    assert seen == before
    assert child.exitcode == 0


def test_a_bare_fork_inside_the_hold_leaves_the_block_cleanly() -> None:
    """``os.fork`` inside the block: the child leaves the block too, and must neither fail
    there nor keep full collections held off."""
    read, write = os.pipe()
    pid = -1
    try:
        with no_full_collections():
            pid = os.fork()
    except BaseException:
        if pid == 0:
            os._exit(3)  # the child must never return into pytest
        raise
    if pid == 0:
        try:
            os.write(write, repr(gc.get_threshold()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as answer:
        seen = answer.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert seen == repr(gc.get_threshold())
