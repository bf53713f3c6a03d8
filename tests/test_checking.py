"""Specs checked by forked helpers must come out exactly as when checked in one process.

allocate hands groups of specs to a pool of forked helpers on Linux when there are at least two
groups. Whatever the specs hold (bad values, specs of another experiment, objects that are not
specs, values that cannot be stored), the helpers' outcome must be the one-process outcome:
the same encoded rows in the same order, or the same error listing the same problems.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import Field, field_validator

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    LeafContext,
    LocalEngine,
    LocalStore,
)
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.driver.prepare import GROUP_ROWS, HELPERS_AFTER, prepare_specs
from scythe_oo.driver.sources import spec_chunks
from scythe_oo.runfolder.tables import read_table

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="helpers fork, which only Linux does safely"
)

PARENT = os.getpid()


class CheckedInput(ExperimentInputSpec):
    a: float = Field(ge=0)
    b: int
    label: str = "x"

    @field_validator("b")
    @classmethod
    def _trap(cls, value: int) -> int:
        if value == -7:
            raise KeyError("b is -7")  # not a validation error: it escapes validation
        if value == -13 and os.getpid() != PARENT:
            os._exit(3)  # a helper that dies under a spec
        if value == -21 and os.getpid() != PARENT:
            time.sleep(3600)  # a helper stuck, as one forked while a lock was held would be
        return value


class CheckedOutput(ExperimentOutputSpec):
    total: float


class Checked(Experiment[CheckedInput, CheckedOutput]):
    name = "checked_in_helpers"

    def run(self, spec: CheckedInput, ctx: LeafContext) -> CheckedOutput:
        return CheckedOutput(total=spec.a + spec.b)


class OtherInput(ExperimentInputSpec):
    a: float


good = st.builds(
    CheckedInput,
    a=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    b=st.integers(min_value=0, max_value=10**6),
    label=st.text(max_size=5),
)
bad = st.one_of(
    st.fixed_dictionaries({"a": st.floats(max_value=-0.5), "b": st.integers(0, 9)}),
    st.fixed_dictionaries({"a": st.just(1.0), "b": st.text(min_size=1, max_size=3)}),
    st.fixed_dictionaries({"a": st.just(1.0), "b": st.just(1), "extra": st.just(2)}),
    st.builds(OtherInput, a=st.floats(0, 1)),
    st.just(3.5),  # not a spec at all
    st.just({"a": 1.0, "b": 2, "label": "\ud800"}),  # valid, but not storable as UTF-8
)


def prepared(specs: list[Any], processes: int, staging: Path) -> pa.Table | str:
    """The encoded specs (as specs.pq will hold them), or the error's text."""
    try:
        result = prepare_specs(
            Checked,
            spec_chunks(Checked, specs, rows=3),
            staging,
            processes=processes,
            group_rows=5,
            helpers_after=1,
        )
    except SpecValidationError as exc:
        return str(exc)
    store = LocalStore(root=staging / "store")
    result.spool.write(store, "specs.pq", "e/v1.0.0/x", "r", {})
    return read_table(store, "specs.pq")


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    specs=st.lists(st.one_of(good, good, good, bad), min_size=1, max_size=40),
)
@example(  # in a helper's group, a bad value; in the next helper's, a value no file can hold
    specs=[
        *({"a": 1.0, "b": i} for i in range(7)),
        {"a": -1.0, "b": 0},
        *({"a": 1.0, "b": i} for i in range(6)),
        {"a": 1.0, "b": 1, "label": "\ud800"},
    ]
)
@example(  # a validation problem in one group, then a value no file can hold in a later one
    specs=[
        {"a": -1.0, "b": 0},
        *({"a": 1.0, "b": i} for i in range(9)),
        {"a": 1.0, "b": 1, "label": "\ud800"},
    ]
)
def test_helpers_find_what_one_process_finds(specs: list[Any], tmp_path: Path) -> None:
    one = prepared(specs, 0, tmp_path / f"one-{len(specs)}-{id(specs)}")
    helped = prepared(specs, 2, tmp_path / f"two-{len(specs)}-{id(specs)}")
    if isinstance(one, str):
        assert helped == one
    else:
        assert isinstance(helped, pa.Table)
        assert helped.equals(one)
        assert helped.num_rows == len(specs)


def test_an_exception_from_a_validator_escapes_as_it_would_in_one_process(
    tmp_path: Path,
) -> None:
    specs = [CheckedInput(a=1.0, b=i) for i in range(20)]
    specs[12] = {"a": 1.0, "b": -7}  # type: ignore[call-overload]
    for processes in (0, 2):
        with pytest.raises(KeyError, match="b is -7"):
            prepare_specs(
                Checked,
                spec_chunks(Checked, specs, rows=3),
                tmp_path / str(processes),
                processes=processes,
                group_rows=5,
                helpers_after=1,
            )


def _thirty_with(position: int, b: int, tmp_path: Path, **options: Any) -> None:
    """Check 30 specs, the one at ``position`` with ``b``, in two helpers: groups of two chunks
    of three, the first group checked here."""
    specs: list[Any] = [{"a": 1.0, "b": i} for i in range(30)]
    specs[position] = {"a": 1.0, "b": b}
    prepare_specs(
        Checked,
        spec_chunks(Checked, specs, rows=3),
        tmp_path,
        processes=2,
        group_rows=5,
        helpers_after=1,
        **options,
    )


def test_a_helper_that_dies_names_the_specs_it_held(tmp_path: Path) -> None:
    # spec 17 is in the group of specs 12 to 17
    with pytest.raises(RuntimeError, match=r"helper process died while checking") as caught:
        _thirty_with(17, -13, tmp_path)
    # The groups in flight when it died, which include the culprit's (the pool cannot tell
    # which of them it was); the first group was checked here, before the helpers started.
    found = re.search(r"specs #(\d+) to #(\d+)", str(caught.value))
    assert found is not None
    first, last = int(found.group(1)), int(found.group(2))
    assert 6 <= first <= 12 and 17 <= last <= 29
    assert "nothing was written" in str(caught.value)


def test_a_stuck_helper_stops_allocate_with_the_way_out_instead_of_hanging(
    tmp_path: Path,
) -> None:
    others = {child.pid for child in psutil.Process().children()}
    with pytest.raises(RuntimeError, match=r"no helper process answered") as caught:
        _thirty_with(14, -21, tmp_path, patience=2.0)
    assert "SCYTHE_PREPARE_PROCESSES=0" in str(caught.value)

    # The stuck helper was killed, not left behind holding the run's memory.
    def helpers() -> list[psutil.Process]:
        alive = []
        for child in psutil.Process().children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.pid not in others and child.status() != psutil.STATUS_ZOMBIE:
                    alive.append(child)
        return alive

    deadline = time.monotonic() + 30
    while helpers() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert helpers() == []


def test_allocate_with_helpers_writes_every_spec_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = (HELPERS_AFTER + 1) * GROUP_ROWS + 123  # the last groups go to the helpers
    monkeypatch.setenv("SCYTHE_PREPARE_PROCESSES", "2")
    store = LocalStore(root=tmp_path)
    run = Checked.allocate(
        (CheckedInput(a=i / 3, b=i, label=f"s{i % 7}") for i in range(n)),
        store=store,
        engine=LocalEngine(max_workers=2),
    )
    run.wait(timeout=300, progress=False)
    assert run.status == "completed"
    specs = read_table(store, run.layout.specs)
    assert specs.column("sort_index").to_pylist() == list(range(n))
    assert specs.column("b").to_pylist() == list(range(n))
    assert specs.column("a").to_pylist() == [i / 3 for i in range(n)]
    assert specs.column("label").to_pylist() == [f"s{i % 7}" for i in range(n)]
    scalars = run.results.scalars()
    assert len(scalars) == n
    assert math.isclose(scalars["total"].sum(), sum(i / 3 + i for i in range(n)))


HELD = threading.Lock()
"""Held by a test's thread most of the time, as a busy library's lock would be."""

SEEN: list[Path] = []
"""Where ``LockedInput`` records the process that validates it (set by a test)."""


class LockedInput(ExperimentInputSpec):
    a: float

    @field_validator("a")
    @classmethod
    def _take_the_lock(cls, value: float) -> float:
        mark = SEEN[0] / str(os.getpid()) if SEEN else None
        if mark is not None and not mark.exists():
            with HELD:  # a fork taken while another thread held it would wait here forever
                mark.write_text("x")
        return value


class Locked(Experiment[LockedInput, CheckedOutput]):
    name = "checked_under_a_lock"

    def run(self, spec: LockedInput, ctx: LeafContext) -> CheckedOutput:
        return CheckedOutput(total=spec.a)


def test_no_helpers_are_forked_while_other_threads_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread of the caller's holds a lock the validators take; a helper forked while it
    was held would hang on it. By default, with another thread alive, every spec is
    checked in the caller's process, and allocate's check finishes."""
    monkeypatch.delenv("SCYTHE_PREPARE_PROCESSES", raising=False)
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setattr(sys.modules[__name__], "SEEN", [seen])
    stop = threading.Event()

    def busy() -> None:
        while not stop.is_set():
            with HELD:
                time.sleep(0.05)
            time.sleep(0.001)

    thread = threading.Thread(target=busy, daemon=True)
    thread.start()
    try:
        table = prepare_specs(
            Locked,
            spec_chunks(Locked, [{"a": float(i)} for i in range(40)], rows=3),
            tmp_path / "staging",
            group_rows=5,
            helpers_after=1,
        )
    finally:
        stop.set()
        thread.join()
    assert not isinstance(table, str)
    assert sorted(p.name for p in seen.iterdir()) == [str(os.getpid())]


def test_without_other_threads_the_default_forks_helpers(tmp_path: Path) -> None:
    """The rule above is about threads, not a blanket off: a fresh process with no other
    thread checks its later groups in forked helpers by default (on two CPUs or more)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the default is no helpers on one CPU")
    script = f"""
import os, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
import tests.test_checking as t
from scythe_oo.driver.prepare import prepare_specs
from scythe_oo.driver.sources import spec_chunks
seen = Path({str(tmp_path / "seen")!r}); seen.mkdir()
t.SEEN[:] = [seen]
prepare_specs(t.Locked, spec_chunks(t.Locked, [{{"a": float(i)}} for i in range(60)], rows=3),
              Path({str(tmp_path / "staging")!r}), group_rows=5, helpers_after=1)
print(os.getpid())
"""
    env = {k: v for k, v in os.environ.items() if k != "SCYTHE_PREPARE_PROCESSES"}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    caller = done.stdout.split()[-1]
    pids = {p.name for p in (tmp_path / "seen").iterdir()}
    assert caller in pids and len(pids) > 1, pids
