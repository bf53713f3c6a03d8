"""Showing a run's progress wherever the researcher is: a terminal, a pipe, a notebook.

A terminal gets a bar; a pipe (a notebook's log, CI, ``2>&1 | tee``) gets a plain line every
few seconds, which a bar's carriage returns would garble; Jupyter gets a widget when ipywidgets
is installed and the plain line otherwise. All three show the same figures, computed from the
run's own start time (the manifest's, or the latest retry's or resume's), not from when the
display started, so attaching to a run that is half done, or done, shows sane rates. When the
run ends, one summary line says how it ended, how long it took and where the tables are.

``SCYTHE_PROGRESS`` (``auto``, ``bar``, ``line``, ``widget`` or ``off``) overrides the
choice, and ``SCYTHE_PROGRESS_SECONDS`` (default 5) sets how often the plain line is printed.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import sys
import time
from typing import IO, Any, Literal, Protocol

import attrs
from tqdm import tqdm

from scythe_oo.engine.protocol import Progress
from scythe_oo.runfolder.manifest import TERMINAL_STATES, Manifest

Mode = Literal["bar", "line", "widget"]
MODES: tuple[Mode, ...] = ("bar", "line", "widget")
ProgressChoice = bool | Mode | None
"""What ``wait(progress=...)`` takes: None or True choose for the place (None also obeys
``SCYTHE_PROGRESS=off``), False shows nothing, a mode forces it."""

LINE_SECONDS = 5.0


def started_at(manifest: Manifest) -> dt.datetime:
    """When the run's latest attempt started: its allocation, or its latest retry or resume."""
    stamp = str(manifest.attempts[-1].get("at")) if manifest.attempts else manifest.created_at
    return _parse(stamp) or _parse(manifest.created_at) or dt.datetime.now(dt.UTC)


def _parse(stamp: str | None) -> dt.datetime | None:
    try:
        moment = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def elapsed_seconds(manifest: Manifest, now: dt.datetime | None = None) -> float:
    """Seconds the latest attempt ran: until it finished, or until now."""
    end = _parse(manifest.finished_at) if manifest.status in TERMINAL_STATES else None
    end = end or now or dt.datetime.now(dt.UTC)
    return max(0.0, (end - started_at(manifest)).total_seconds())


@attrs.frozen(kw_only=True)
class Figures:
    """What every progress display shows: counts, rate and ETA of one run."""

    label: str
    state: str
    done: int
    failed: int
    total: int
    elapsed: float
    """Seconds since the run's latest attempt started (until it ended, if it did)."""

    @classmethod
    def of(cls, label: str, manifest: Manifest, snap: Progress) -> Figures:
        return cls(
            label=label,
            state=snap.state,
            done=snap.done,
            failed=snap.failed,
            total=snap.total,
            elapsed=elapsed_seconds(manifest),
        )

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def rate(self) -> float | None:
        """Leaves per second since the start; None before there is anything to divide."""
        if self.finished <= 0 or self.elapsed < 1.0:
            return None
        return self.finished / self.elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate; None when unknown, 0 once the run ended."""
        if self.state in TERMINAL_STATES:
            return 0.0
        rate = self.rate
        return None if rate is None else max(0, self.total - self.finished) / rate

    def counts(self) -> str:
        share = f" ({100 * self.finished / self.total:.0f}%)" if self.total else ""
        return f"{self.finished}/{self.total}{share}, {self.done} done, {self.failed} failed"

    def speed(self) -> str:
        rate = self.rate
        shown = "-" if rate is None else f"{rate:.3g} leaf/s"
        if self.state in TERMINAL_STATES:
            return shown
        eta = self.eta
        return f"{shown}, ETA {'?' if eta is None else duration(eta)}"

    def line(self) -> str:
        return (
            f"{self.label}: {self.state}, {self.counts()}, {self.speed()}, "
            f"elapsed {duration(self.elapsed)}"
        )


def duration(seconds: float) -> str:
    """``<1s``, ``42s``, ``3m05s``, ``2h07m``: short enough for a progress line."""
    if seconds < 1:
        return "<1s"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def summary(figures: Figures, tables: str, error: str | None = None) -> str:
    """The one line printed when a run ends."""
    head = f"{figures.label}: {figures.state}, {figures.done} done, {figures.failed} failed of "
    head += f"{figures.total} in {duration(figures.elapsed)}"
    if figures.state == "failed" or figures.state == "interrupted":
        reason = (error or "no detail recorded").strip().splitlines()[0][:200]
        return f"{head}; {reason}"
    return f"{head}; tables in {tables}"


class Reporter(Protocol):
    """A progress display: told the figures after every poll, closed once at the end."""

    def update(self, figures: Figures) -> None: ...

    def close(self, figures: Figures | None, summary: str | None) -> None: ...


class LineReporter:
    """A plain line every ``every`` seconds, and whenever the state changes."""

    def __init__(self, stream: IO[str], every: float) -> None:
        self.stream = stream
        self.every = every
        self._last: float | None = None
        self._state: str | None = None

    def update(self, figures: Figures) -> None:
        if figures.state in TERMINAL_STATES:
            return  # the summary line says it
        now = time.monotonic()
        due = self._last is None or now - self._last >= self.every
        if due or figures.state != self._state:
            self._emit(figures.line())
            self._last, self._state = now, figures.state

    def close(self, figures: Figures | None, summary: str | None) -> None:
        if summary:
            self._emit(summary)

    def _emit(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class BarReporter:
    """A tqdm bar whose rate and ETA are the run's own, not tqdm's (which would count from
    when the bar appeared, and divide a finished run's total by a few microseconds)."""

    FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{postfix}"

    def __init__(self, stream: IO[str], label: str) -> None:
        self.stream = stream
        self.bar: Any = tqdm(
            total=0, desc=label, file=stream, dynamic_ncols=True, bar_format=self.FORMAT
        )

    def update(self, figures: Figures) -> None:
        bar = self.bar
        bar.total = figures.total
        bar.n = figures.finished
        bar.set_postfix_str(
            f"{figures.failed} failed, {figures.speed()}, {figures.state}", refresh=False
        )
        bar.refresh()

    def close(self, figures: Figures | None, summary: str | None) -> None:
        self.bar.close()
        if summary:
            print(summary, file=self.stream, flush=True)


class WidgetReporter:
    """An ipywidgets progress bar with the figures beside it, for Jupyter. The summary is
    also printed, so that a notebook saved without its widgets' state still shows it."""

    def __init__(self, widgets: Any, display: Any, label: str, stream: IO[str]) -> None:
        self.stream = stream
        self.bar = widgets.IntProgress(value=0, min=0, max=1, description=label[:30])
        self.text = widgets.HTML(value="starting")
        self.box = widgets.HBox([self.bar, self.text])
        display(self.box)

    def update(self, figures: Figures) -> None:
        self.bar.max = max(figures.total, 1)
        self.bar.value = figures.finished
        self.text.value = html.escape(
            f"{figures.counts()}, {figures.speed()}, {figures.state}, "
            f"elapsed {duration(figures.elapsed)}"
        )

    def close(self, figures: Figures | None, summary: str | None) -> None:
        if figures is not None:
            self.update(figures)
            good = figures.state == "completed"
            self.bar.bar_style = "success" if good else "warning"
            if figures.state in ("failed", "interrupted"):
                self.bar.bar_style = "danger"
        if summary:
            self.text.value = html.escape(summary)
            print(summary, file=self.stream, flush=True)


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython is never imported to find out)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def chosen_mode(progress: ProgressChoice) -> Mode | None:
    """Which display ``progress`` asks for here; None for none."""
    if progress is False:
        return None
    if isinstance(progress, str):
        if progress not in MODES:
            raise ValueError(f"progress={progress!r}: use True, False, None or one of {MODES}")
        return progress
    setting = os.environ.get("SCYTHE_PROGRESS", "auto").strip().lower()
    if setting == "off":
        return None if progress is None else _automatic()
    if setting in MODES:
        return setting
    return _automatic()


def _automatic() -> Mode:
    if in_notebook():
        return "widget"
    return "bar" if sys.stderr.isatty() else "line"


def line_seconds() -> float:
    raw = os.environ.get("SCYTHE_PROGRESS_SECONDS", "")
    try:
        return max(0.0, float(raw)) if raw else LINE_SECONDS
    except ValueError:
        raise ValueError(f"SCYTHE_PROGRESS_SECONDS={raw!r} is not a number of seconds") from None


def make_reporter(progress: ProgressChoice, label: str) -> Reporter | None:
    """The display ``progress`` asks for, or None. A widget needs ipywidgets; without it a
    notebook gets the plain line."""
    mode = chosen_mode(progress)
    if mode is None:
        return None
    if mode == "widget":
        try:
            import ipywidgets  # optional, heavy: only a notebook with ipywidgets shows a widget
            from IPython.display import display  # comes with every Jupyter kernel
        except ImportError:
            return LineReporter(sys.stderr, line_seconds())
        return WidgetReporter(ipywidgets, display, label, sys.stderr)
    if mode == "bar":
        return BarReporter(sys.stderr, label)
    return LineReporter(sys.stderr, line_seconds())
