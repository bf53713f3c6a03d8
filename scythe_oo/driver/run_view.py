"""How a run shows itself: one readable line for ``repr``, a small table for Jupyter.

A researcher's first look at a run is often just typing its name in a notebook or a REPL, so
the run answers with what they would ask next: which experiment and version, how it stands,
how long it took, where it lives, and, once done, the first rows of its results.
"""

from __future__ import annotations

import html
from typing import Any

from scythe_oo.driver.progress import Figures, duration, elapsed_seconds, started_at
from scythe_oo.driver.results import RunResults
from scythe_oo.engine.protocol import Progress
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.manifest import Manifest

HTML_ROWS = 5
"""Rows of the scalars table a finished run shows in Jupyter."""


def run_repr(uri: str, layout: RunLayout, snapshot: tuple[Manifest, Progress] | None) -> str:
    if snapshot is None:
        return f"ExperimentRun({uri!r})"
    manifest, snap = snapshot
    return (
        f"ExperimentRun({layout.experiment} {layout.version} {layout.timestamp}: {snap.state}, "
        f"{snap.done} done, {snap.failed} failed of {snap.total}, "
        f"{duration(elapsed_seconds(manifest))}, {uri!r})"
    )


def run_html(
    uri: str,
    layout: RunLayout,
    snapshot: tuple[Manifest, Progress] | None,
    results: RunResults,
) -> str:
    if snapshot is None:
        return f"<code>ExperimentRun({html.escape(uri)})</code> (its store cannot be read)"
    manifest, snap = snapshot
    rows = [
        ("experiment", layout.experiment),
        ("version", str(layout.version)),
        ("status", snap.state),
        ("leaves", f"{snap.done} done, {snap.failed} failed of {snap.total}"),
        ("started", started_at(manifest).isoformat(timespec="seconds")),
        ("elapsed", duration(elapsed_seconds(manifest))),
        ("folder", uri),
    ]
    if snap.error:
        rows.append(("error", snap.error.strip().splitlines()[0][:300]))
    cells = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
        for k, v in rows
    )
    page = f"<div class='scythe-run'><table>{cells}</table>"
    if snap.state in ("completed", "completed_with_failures"):
        try:
            head = results.scalars().head(HTML_ROWS)
        except (KeyError, OSError):
            head = None
        if head is not None:
            page += f"<p>scalars, first {len(head)} rows:</p>{head.to_html()}"
    return page + "</div>"


def run_details(uri: str, manifest: Manifest, snap: Progress) -> dict[str, Any]:
    """A run's state as plain data: what ``scythe-oo status --json`` prints."""
    figures = Figures.of(manifest.experiment_name, manifest, snap)
    return {
        "uri": uri,
        "experiment": manifest.experiment_name,
        "class": manifest.experiment_class,
        "version": manifest.version,
        "status": snap.state,
        "succeeded": snap.done,
        "failed": snap.failed,
        "total": snap.total,
        "rate": figures.rate,
        "eta_seconds": figures.eta,
        "started": started_at(manifest).isoformat(timespec="seconds"),
        "elapsed_seconds": figures.elapsed,
        "engine": manifest.engine.get("kind", ""),
        "attempts": [dict(attempt) for attempt in manifest.attempts],
        "error": snap.error,
    }
