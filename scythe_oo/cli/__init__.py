"""The ``scythe-oo`` command: watch, inspect, retry and debug runs from a shell.

Every command prints plain text, or JSON with ``--json``. A mistake the user can fix is one
line on stderr and exit code 2 (``--debug`` adds the traceback); nothing prints a raw
traceback by default.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

import click

from scythe_oo.cli.actions import allocate, replay, resume, retry
from scythe_oo.cli.design import estimate, sample
from scythe_oo.cli.inspect import failures, logs, report, results, runs, status
from scythe_oo.cli.workers import list_experiments, worker
from scythe_oo.definition.errors import ScytheError
from scythe_oo.definition.version import __version__

PROG = "scythe-oo"

USER_ERRORS = (ScytheError, LookupError, ValueError, OSError, ImportError, RuntimeError)
"""Exceptions that report something the user can fix (a name, a file, a state): exit 2."""

MESSAGE_CHARS = 1200
"""An error's message, its lines joined, is cut here: the line must stay readable."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name=PROG, message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="On an error, show its traceback too.")
def cli(debug: bool) -> None:
    """Watch, inspect, retry and debug scythe_oo runs.

    Runs are found in the store that --store names, or that the SCYTHE_* settings name
    (SCYTHE_STORAGE_BUCKET, else SCYTHE_LOCAL_ROOT, else ./scythe-data). Every command takes
    --json for scripts and --help for an example.

    \b
    Example:
      scythe-oo runs
      scythe-oo status simulate_energy --watch
      scythe-oo failures simulate_energy --group-by error
    """


for command in (
    runs,
    status,
    results,
    failures,
    logs,
    report,
    allocate,
    retry,
    resume,
    replay,
    sample,
    estimate,
    worker,
    list_experiments,
):
    cli.add_command(command)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return its exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("SCYTHE_DEBUG") == "1"
    try:
        result = cli.main(args=args, prog_name=PROG, standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        _say(f"{where}: {exc.format_message()} (see `{where} --help`)")
        return exc.exit_code
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        _say(f"{PROG}: {exc.format_message()}")
        return exc.exit_code
    except (KeyboardInterrupt, click.Abort):
        _say(
            f"{PROG}: interrupted. A local run stops with this process; "
            f"`{PROG} resume RUN` continues it. A Hatchet run goes on."
        )
        sys.stderr.flush()
        os._exit(130)  # a local run's threads would otherwise keep the process alive
    except Exception as exc:
        if debug:
            traceback.print_exc()
        hint = "" if debug else " (--debug shows the traceback)"
        _say(f"{PROG}: {_describe(exc)}{hint}")
        return 2 if isinstance(exc, USER_ERRORS) else 1
    return result if isinstance(result, int) else 0


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and len(exc.args) == 1 and isinstance(exc.args[0], str):
        text = exc.args[0]
    else:
        text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    shown = "; ".join(lines)
    if len(shown) > MESSAGE_CHARS:
        shown = shown[: MESSAGE_CHARS - 3] + "..."
    if shown and isinstance(exc, ScytheError | LookupError):
        return shown  # our own messages say what is wrong and how to fix it
    name = type(exc).__name__
    return f"{name}: {shown}" if shown else name


def _say(text: str) -> None:
    click.echo(" ".join(text.split("\n")), err=True)
