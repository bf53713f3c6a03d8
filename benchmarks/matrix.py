"""Cases x contenders x repeats, measured round-robin: the loop peers.py, cores.py and
hatchet_compare.py share.

Contenders alternate within every repeat (and the order rotates from one repeat to the next),
so a machine that gets busier during the run slows every contender alike instead of whichever
happened to run last. A contender that was stopped (time or memory cap) or failed on a case is
not run again on that case: its later repeats would only cost the same time again.
"""

from __future__ import annotations

import argparse
import itertools
import re
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import Report, fmt_s, summary


@dataclass(frozen=True)
class Case:
    """``n`` leaves of ``spin_ms`` milliseconds of CPU each, on ``workers`` processes."""

    n: int
    spin_ms: int = 0
    workers: int = 2

    @property
    def leaf(self) -> str:
        return "no-op" if self.spin_ms == 0 else f"{self.spin_ms} ms"

    @property
    def label(self) -> str:
        return f"{self.n:,} x {self.leaf}"

    @property
    def key(self) -> str:
        """Stable name in the JSON results."""
        return f"n={self.n},spin_ms={self.spin_ms},workers={self.workers}"

    def args(self) -> list[str]:
        """The case as ``benchmarks.contenders`` arguments."""
        return ["--n", str(self.n), "--spin-ms", str(self.spin_ms), "--workers", str(self.workers)]


_CASE = re.compile(r"^(?P<n>[0-9_,]+)(?:x(?P<ms>[0-9]+)ms)?$")


def parse_case(text: str, workers: int = 2) -> Case:
    """``20000`` (no-op leaves) or ``2000x20ms`` (20 ms of CPU per leaf)."""
    match = _CASE.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r}: write N for no-op leaves or NxMSms, e.g. 2000x20ms")
    n = int(match["n"].replace("_", "").replace(",", ""))
    return Case(n=n, spin_ms=int(match["ms"] or 0), workers=workers)


def case_arguments(
    parser: argparse.ArgumentParser,
    full: Sequence[str],
    quick: Sequence[str],
    contenders: Sequence[str],
) -> None:
    """--quick, --cases and --contenders, for the scripts whose cases are N or NxMSms."""
    parser.add_argument("--quick", action="store_true", help=f"cases {list(quick)}, 1 repeat")
    parser.add_argument("--cases", nargs="+", help=f"N or NxMSms (default {list(full)})")
    parser.add_argument("--contenders", nargs="+", choices=contenders, default=list(contenders))


def failed(report: Report) -> bool:
    return report.get("seconds") is None


def rotated(items: Sequence[str], by: int) -> list[str]:
    if not items:
        return []
    k = by % len(items)
    return [*items[k:], *items[:k]]


Measure = Callable[[Case, str], Report]
Allowed = Callable[[Case, str, int], str | None]
Session = Callable[[str, int], AbstractContextManager[Any]]
Results = dict[str, dict[str, list[Report]]]


def run_matrix(
    cases: Sequence[Case],
    contenders: Sequence[str],
    repeats: int,
    measure: Measure,
    *,
    allowed: Allowed = lambda case, name, repeat: None,
    session: Session | None = None,
    log: Callable[[str], None] = print,
) -> Results:
    """``measure(case, contender)`` for every pair, ``repeats`` times, round-robin.

    ``allowed(case, contender, repeat)`` says why a pair is not run in that repeat (None: run
    it); a pair never run gets a single report saying why. Without ``session`` each case runs
    every contender in turn. With it (for contenders that need servers, such as Hatchet
    workers), each repeat runs contender after contender, and ``session(contender, workers)``
    is entered once around that contender's consecutive cases with the same worker count.
    """
    results: Results = {case.key: {name: [] for name in contenders} for case in cases}

    def wanted(case: Case, name: str, repeat: int) -> bool:
        reports = results[case.key][name]
        if reports and failed(reports[-1]):
            return False
        reason = allowed(case, name, repeat)
        if reason is not None and not reports:
            reports.append({"seconds": None, "skipped": reason})
        return reason is None

    def one(case: Case, name: str, repeat: int) -> None:
        log(f"[{repeat + 1}/{repeats}] {case.label} ({case.workers} workers): {name} ...")
        report = measure(case, name)
        results[case.key][name].append(report)
        log(f"    {describe(report)}")

    for repeat in range(repeats):
        order = rotated(contenders, repeat)
        if session is None:
            for case in cases:
                for name in order:
                    if wanted(case, name, repeat):
                        one(case, name, repeat)
            continue
        for name in order:
            todo = [case for case in cases if wanted(case, name, repeat)]
            for workers, grouped in itertools.groupby(todo, key=lambda case: case.workers):
                group = list(grouped)
                try:
                    context = session(name, workers)
                    context.__enter__()
                except Exception as exc:  # workers that never came up fail their cases only
                    error = f"session did not start: {type(exc).__name__}: {exc}"
                    log(f"[{repeat + 1}/{repeats}] {name}: {error[:300]}")
                    for case in group:
                        results[case.key][name].append({"seconds": None, "error": error})
                    continue
                try:
                    for case in group:
                        one(case, name, repeat)
                finally:
                    context.__exit__(None, None, None)
    return results


def describe(report: Report) -> str:
    """One report in a few words: its seconds, or why it has none."""
    if report.get("skipped"):
        return f"skipped: {report['skipped']}"
    if report.get("stopped"):
        return f"stopped ({report['stopped']})"
    if report.get("error"):
        return "error: " + str(report["error"]).strip().splitlines()[-1][:200]
    return fmt_s(report["seconds"])


def seconds(reports: Sequence[Report]) -> dict[str, Any]:
    """Min and median seconds over the repeats that finished."""
    return summary([r["seconds"] for r in reports if r.get("seconds") is not None])


def best(results: Results, case: Case, name: str) -> float | None:
    value: float | None = seconds(results[case.key][name])["min"]
    return value


def cell(reports: Sequence[Report]) -> str:
    """``min (median)`` over the finished repeats, or why there is none."""
    stats = seconds(reports)
    if stats["min"] is None:
        return describe(reports[-1]) if reports else "-"
    if len(stats["values"]) == 1:
        return fmt_s(stats["min"])
    return f"{fmt_s(stats['min'])} ({fmt_s(stats['median'])})"


def as_json(results: Results, cases: Sequence[Case], contenders: Sequence[str]) -> dict[str, Any]:
    """Per case and contender: min, median and every raw report."""
    return {
        case.key: {
            "case": {"n": case.n, "spin_ms": case.spin_ms, "workers": case.workers},
            **{
                name: {**seconds(results[case.key][name]), "reports": results[case.key][name]}
                for name in contenders
            },
        }
        for case in cases
    }
