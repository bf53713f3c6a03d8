"""Commands that look at runs: runs, status, results, failures, logs, report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import pandas as pd

from scythe_oo.cli.base import (
    UserError,
    described,
    emit,
    find_run,
    finite,
    open_store,
    output_options,
    store_option,
    table,
)
from scythe_oo.driver.locate import run_summaries
from scythe_oo.driver.progress import duration
from scythe_oo.storage.factory import default_store

ENDED = ("completed", "completed_with_failures", "failed", "interrupted")


@click.command()
@click.argument("experiment", required=False)
@store_option
@output_options
@described("scythe-oo runs", "scythe-oo runs simulate_energy --store s3://my-lab/scythe")
def runs(experiment: str | None, store: str | None, as_json: bool, debug: bool) -> int:
    """List the runs in the store, newest first: experiment, version, status, counts and
    duration."""
    chosen = open_store(store) or default_store()
    found = run_summaries(chosen, experiment)
    rows = [
        [
            s.experiment,
            s.version,
            s.run,
            s.status,
            s.succeeded,
            s.failed,
            s.total,
            duration(s.seconds),
        ]
        for s in found
    ]
    header = ["EXPERIMENT", "VERSION", "RUN", "STATUS", "DONE", "FAILED", "TOTAL", "DURATION"]
    text = table(rows, header) if rows else f"no runs in {chosen.uri('')}"
    emit(as_json, [s.as_dict() for s in found], text)
    return 0


@click.command()
@click.argument("run")
@click.option("--watch", is_flag=True, help="Follow the run's progress until it ends.")
@store_option
@output_options
@described("scythe-oo status simulate_energy --watch", takes_run=True)
def status(run: str, watch: bool, store: str | None, as_json: bool, debug: bool) -> int:
    """Show a run's status, counts, rate and where it lives.

    With --watch, follow its progress (a bar on a terminal, a line every few seconds
    otherwise) until it ends; the exit code is then 0 when it completed, 1 otherwise.
    """
    found = find_run(run, store)
    if watch:
        found.wait(progress=None)
    details = found.details()
    emit(as_json, details, lambda: _details_text(details))
    return 0 if not watch or details["status"] == "completed" else 1


def _details_text(d: dict[str, Any]) -> str:
    rate = "-" if d["rate"] is None else f"{d['rate']:.3g} leaf/s"
    eta = "-" if d["eta_seconds"] is None else duration(d["eta_seconds"])
    finished = d["succeeded"] + d["failed"]
    lines = [
        ("run", d["uri"]),
        ("experiment", f"{d['experiment']} ({d['class']})"),
        ("version", d["version"]),
        ("status", d["status"]),
        ("leaves", f"{finished}/{d['total']}: {d['succeeded']} done, {d['failed']} failed"),
        ("rate", rate if d["status"] in ENDED else f"{rate}, ETA {eta}"),
        ("started", d["started"]),
        ("elapsed", duration(d["elapsed_seconds"])),
        ("engine", d["engine"]),
    ]
    for attempt in d["attempts"]:
        lines.append(("attempt", f"{attempt.get('reason')} at {attempt.get('at')}"))
    if d["error"]:
        lines.append(("error", str(d["error"]).strip().splitlines()[0]))
    return "\n".join(f"{k:<11}{v}" for k, v in lines)


@click.command()
@click.argument("run")
@click.option("--table", "names", multiple=True, metavar="NAME", help="A table (repeatable).")
@click.option("--to", "dest", type=click.Path(file_okay=False, path_type=Path), help="Write here.")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet")
@click.option("--rows", type=int, default=None, help="Rows to print (text: 20, JSON: all).")
@store_option
@output_options
@described(
    "scythe-oo results simulate_energy",
    "scythe-oo results simulate_energy@v1.2.0 --to out/ --format csv",
    takes_run=True,
)
def results(
    run: str,
    names: tuple[str, ...],
    dest: Path | None,
    fmt: str,
    rows: int | None,
    store: str | None,
    as_json: bool,
    debug: bool,
) -> int:
    """Print a run's results, or write its tables to a folder.

    Without --to, prints the first rows of each --table (default: scalars). With --to DIR,
    writes each --table (default: every table in final/) to DIR as Parquet or CSV, with the
    inputs as columns in CSV and as the index in Parquet.
    """
    found = find_run(run, store)
    tables = found.results
    if dest is None:
        chosen = list(names) or ["scalars"]
        frames = {name: tables.dataframe(name) for name in chosen}
        limit = rows if rows is not None else (None if as_json else 20)
        data = {name: _records(f.head(limit) if limit else f) for name, f in frames.items()}
        emit(as_json, data, lambda: _tables_text(frames, limit or 20))
        return 0
    chosen = list(names) or tables.list()
    if not chosen:
        raise UserError(f"{found.uri} has no final tables yet; is it finished?")
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name in chosen:
        frame = tables.dataframe(name)
        target = dest / f"{name}.{'pq' if fmt == 'parquet' else 'csv'}"
        if fmt == "parquet":
            frame.to_parquet(target)
        else:
            frame.reset_index().to_csv(target, index=False)
        written.append(str(target))
    emit(as_json, {"written": written}, "\n".join(written))
    return 0


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    flat = frame.reset_index()
    return [
        {str(k): finite(v) for k, v in row.items()}
        for row in flat.astype(object).where(flat.notna(), None).to_dict("records")
    ]


def _tables_text(frames: dict[str, pd.DataFrame], limit: int) -> str:
    parts = []
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        for name, frame in frames.items():
            shown = frame.reset_index(level=["experiment_id", "root_workflow_run_id"], drop=True)
            more = f" (first {limit}; --to DIR writes all)" if len(frame) > limit else ""
            parts.append(f"{name}: {len(frame)} rows{more}\n{shown.head(limit).to_string()}")
    return "\n\n".join(parts)


@click.command()
@click.argument("run")
@click.option(
    "--group-by",
    type=click.Choice(["error", "worker"]),
    default=None,
    help="Count failures by error type or by worker instead of listing them.",
)
@store_option
@output_options
@described("scythe-oo failures simulate_energy --group-by error", takes_run=True)
def failures(run: str, group_by: str | None, store: str | None, as_json: bool, debug: bool) -> int:
    """List a run's failed specs: error, message, attempts and worker; or count them."""
    found = find_run(run, store)
    frame = found.failures().reset_index()
    if group_by is not None:
        column = "error_type" if group_by == "error" else "worker"
        groups: list[dict[str, Any]] = []
        for key, part in frame.groupby(column, sort=False):
            groups.append(
                {
                    column: key,
                    "count": len(part),
                    "message": _first_line(part["error_message"].iloc[0]),
                    "sort_indexes": [int(i) for i in part["sort_index"]],
                }
            )
        groups.sort(key=lambda g: -int(g["count"]))
        rows = [[g[column], g["count"], _short(g["sort_indexes"]), g["message"]] for g in groups]
        header = [column.upper(), "COUNT", "SORT_INDEXES", "FIRST MESSAGE"]
        emit(as_json, groups, lambda: table(rows, header) if rows else "no failures")
        return 0
    listed = [
        {
            "sort_index": int(r["sort_index"]),
            "error_type": r["error_type"],
            "message": r["error_message"],
            "attempts": int(r["attempts"]),
            "worker": r["worker"],
            "wall_time": finite(float(r["wall_time"])),
            "log_tail": r.get("log_tail"),
            "traceback": r["traceback"],
        }
        for r in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    rows = [
        [f["sort_index"], f["error_type"], f["attempts"], _first_line(f["message"])] for f in listed
    ]
    header = ["SORT_INDEX", "ERROR", "ATTEMPTS", "MESSAGE"]
    emit(as_json, listed, lambda: table(rows, header) if rows else "no failures")
    return 0


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0][:120] if lines else ""


def _short(indexes: list[int]) -> str:
    shown = ",".join(map(str, indexes[:8]))
    return f"{shown},..." if len(indexes) > 8 else shown


@click.command()
@click.argument("run")
@click.argument("sort_index", type=int)
@store_option
@output_options
@described("scythe-oo logs simulate_energy 42", takes_run=True)
def logs(run: str, sort_index: int, store: str | None, as_json: bool, debug: bool) -> int:
    """Print what one leaf wrote with ctx.log (kept in the run folder, bounded per leaf)."""
    found = find_run(run, store)
    text = found.logs(sort_index)
    data = {"uri": found.uri, "sort_index": sort_index, "lines": text.splitlines()}
    emit(as_json, data, text.rstrip("\n") or f"leaf {sort_index} logged nothing")
    return 0


@click.command()
@click.argument("run")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None)
@store_option
@output_options
@described("scythe-oo report simulate_energy -o sweep.html", takes_run=True)
def report(run: str, output: Path | None, store: str | None, as_json: bool, debug: bool) -> int:
    """Write a finished run's HTML report (needs the [report] extra, matplotlib).

    Without -o, report.html goes into the run folder when it is local, else into the working
    directory.
    """
    found = find_run(run, store)
    path = found.report(output)
    emit(as_json, {"path": str(path)}, str(path))
    return 0
