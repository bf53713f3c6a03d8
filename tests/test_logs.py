"""ctx.log lines are kept in the run folder: bounded per leaf, streamed as they come, redacted,
readable with run.logs(i), and the last ones of a failed leaf join its failures row."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scythe_oo import LeafContext, LocalEngine, LocalStore
from scythe_oo.leaf.logbook import LeafLog, LogBuffer, LogLimits
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.versions import SemVer
from tests.support.daily import Daily, DailyInput, specs

pytestmark = pytest.mark.timeout(180)

LAYOUT = RunLayout("daily", SemVer(1, 0, 0), "2026-01-01_00-00-00")


def physical_lines(messages: list[str]) -> list[str]:
    return [line for message in messages for line in (message.splitlines() or [""])]


@settings(max_examples=200, deadline=None)
@given(
    messages=st.lists(st.text(max_size=300), max_size=80),
    max_lines=st.integers(2, 40),
    head_share=st.floats(0.01, 0.99),
    line_chars=st.integers(16, 120),
)
def test_a_log_keeps_its_head_and_its_latest_lines_within_bounds(
    messages: list[str], max_lines: int, head_share: float, line_chars: int
) -> None:
    head = min(max_lines - 1, max(1, int(max_lines * head_share)))
    limits = LogLimits(max_lines=max_lines, head_lines=head, line_chars=line_chars)
    buffer = LogBuffer(limits)
    given_lines = physical_lines(messages)
    for line in given_lines:
        buffer.add(line)

    def clipped(line: str) -> str:
        if len(line) <= line_chars:
            return line
        return f"{line[:line_chars]} ... [{len(line) - line_chars} characters cut]"

    kept = buffer.lines()
    expected = [clipped(line) for line in given_lines]
    assert len(kept) <= max_lines + 1  # the lines kept, and one saying how many were dropped
    if len(expected) <= max_lines:
        assert kept == expected
    else:
        assert kept[:head] == expected[:head]
        assert kept[-(max_lines - head) :] == expected[-(max_lines - head) :]
        assert kept[head] == f"... [{len(expected) - max_lines} lines dropped] ..."


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(messages=st.lists(st.text(max_size=80), min_size=1, max_size=30))
def test_a_stored_log_is_what_was_kept_with_secrets_masked(
    messages: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-value-9f8e7d"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = LocalStore(root=tmp_path / "store")
    book = LeafLog(store, LAYOUT, "000000007", limits=LogLimits(max_lines=20, head_lines=5))
    for message in messages:
        book.write(f"{message} key={secret}")
    book.close()
    text = store.get_bytes(LAYOUT.leaf_log("000000007")).decode()
    assert secret not in text
    assert text.startswith("--- attempt 1")
    body = text.splitlines()
    assert len(body) <= 21
    last = physical_lines([f"{m} key=***" for m in messages])[-1]
    assert body[-1].endswith(last[:2000])
    assert book.tail() is not None and book.tail().splitlines()[-1] == body[-1]  # type: ignore[union-attr]


def test_a_silent_leaf_writes_no_log(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    book = LeafLog(store, LAYOUT, "000000001")
    book.close()
    assert book.tail() is None
    assert not store.exists(LAYOUT.leaf_log("000000001"))


def test_a_retry_keeps_the_earlier_attempts_lines(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    first = LeafLog(store, LAYOUT, "000000003", attempt=1, worker="w1")
    first.write("first try")
    first.close()
    second = LeafLog(store, LAYOUT, "000000003", attempt=2, worker="w2")
    second.write("second try")
    second.close()
    text = store.get_bytes(LAYOUT.leaf_log("000000003")).decode()
    assert text.index("attempt 1 on w1") < text.index("first try") < text.index("attempt 2 on w2")
    assert text.index("attempt 2 on w2") < text.index("second try")


def wait_until(condition: object, what: str, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_logs_stream_while_the_leaf_runs_and_join_failure_rows(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    store = LocalStore(root=tmp_path / "store")
    items = [
        DailyInput(i=0, gate=str(gate), lines=3),
        DailyInput(i=1, fails=True, lines=2),
        DailyInput(i=2, lines=0),
    ]
    run = Daily.allocate(items, store=store, engine=LocalEngine(max_workers=2))
    # The gated leaf is still running: its first lines must already be in the run folder.
    wait_until(lambda: "leaf 0 says line 2" in run.logs(0), "leaf 0's lines to be stored")
    assert "passed the gate" not in run.logs(0)
    assert run.status == "running"
    gate.write_text("open")
    run.wait(timeout=120, progress=False)
    assert run.status == "completed_with_failures"
    log = run.logs(0)
    assert log.index("leaf 0 says line 0") < log.index("passed the gate")
    assert run.logs(2) == ""
    failure = run.failures().reset_index().set_index("sort_index").loc[1]
    assert "leaf 1 says line 1" in failure["log_tail"]
    assert "leaf 1 says line 1" in run.logs(1)
    with pytest.raises(IndexError, match="numbered 0 to 2"):
        run.logs(3)


def test_a_leaf_context_built_by_hand_needs_nothing(tmp_path: Path) -> None:
    source = tmp_path / "weather.csv"
    source.write_text("t\n1\n")
    ctx = LeafContext()
    assert ctx.fetch(source.as_uri()) == source
    assert ctx.fetch(str(source)) == source
    assert ctx.upload("out", source) == source.resolve().as_uri()
    with pytest.raises(ValueError, match="only finds local files"):
        ctx.fetch("s3://bucket/key.csv")
    output = Daily().run(specs(3)[2], ctx)
    assert output.square == pytest.approx(2 * 1.2**2)
