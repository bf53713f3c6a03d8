"""What every ``scythe-oo`` command shares: its options, its errors, its output, and finding
the runs, stores and experiments a researcher names on the command line."""

from __future__ import annotations

import datetime as dt
import importlib
import inspect
import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from scythe_oo.definition.base import REGISTRY, AnyExperiment, ExperimentBase
from scythe_oo.driver.locate import locate_run
from scythe_oo.driver.run import ExperimentRun
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import store_from_uri

F = TypeVar("F", bound=Callable[..., Any])

RUN_HELP = (
    "RUN is a run folder URI, a path to a run folder, a run id "
    "(EXPERIMENT/vX.Y.Z/TIMESTAMP), EXPERIMENT (its newest run) or EXPERIMENT@vX.Y.Z."
)


def described(*examples: str, takes_run: bool = False) -> Callable[[F], F]:
    """Finish a command's help: what RUN may be, and a copy-pasteable example."""

    def finish(func: F) -> F:
        doc = inspect.cleandoc(func.__doc__ or "")
        run = f"\n\n{RUN_HELP}" if takes_run else ""
        lines = "\n".join(f"  {example}" for example in examples)
        func.__doc__ = f"{doc}{run}\n\n\b\nExample:\n{lines}"
        return func

    return finish


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit code 2."""

    exit_code = 2


def output_options(func: F) -> F:
    """``--json`` and ``--debug``, which every command takes."""
    func = click.option("--debug", is_flag=True, help="On an error, show its traceback too.")(func)
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the output as JSON, for scripts."
    )(func)


def store_option(func: F) -> F:
    return click.option(
        "--store",
        metavar="URI|PATH",
        help="Where runs live: s3://bucket/prefix, file:///root or a folder. "
        "Default: the SCYTHE_* settings (SCYTHE_STORAGE_BUCKET, else SCYTHE_LOCAL_ROOT, "
        "else ./scythe-data).",
    )(func)


def module_option(func: F) -> F:
    return click.option(
        "--module",
        "modules",
        multiple=True,
        metavar="MODULE",
        help="Import this module (or package) first, to find experiments in it. Repeatable.",
    )(func)


def open_store(text: str | None) -> ArtifactStore | None:
    """The ``--store`` option's store, or None for the one the settings name."""
    return None if text is None else store_from_uri(text)


def find_run(text: str, store: str | None) -> ExperimentRun:
    return locate_run(text, open_store(store))


def import_modules(names: Iterable[str]) -> None:
    """Import user modules as ``python -m`` would find them (the working directory first),
    turning a missing one into a one-line error."""
    if "" not in sys.path:
        sys.path.insert(0, "")
    for name in names:
        try:
            REGISTRY.discover([name])
        except ModuleNotFoundError as exc:
            if exc.name is not None and (name == exc.name or name.startswith(f"{exc.name}.")):
                raise UserError(
                    f"no module named {name!r} here ({Path.cwd()}); run from the folder that "
                    "holds it, or add that folder to PYTHONPATH"
                ) from exc
            raise UserError(f"importing {name!r} failed: {exc}") from exc


def load_experiment(text: str, modules: Sequence[str]) -> AnyExperiment:
    """An experiment named as ``module:Class``, or by its registered name in ``--module``."""
    import_modules(modules)
    if ":" in text:
        module_name, _, qualname = text.partition(":")
        import_modules([module_name])
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if isinstance(found, type) and issubclass(found, ExperimentBase):
            return found
        inside = [  # a package's modules were imported too: the class may be in one of them
            cls
            for cls in REGISTRY.all()
            if cls.__qualname__ == qualname and cls.__module__.startswith(f"{module_name}.")
        ]
        if len(inside) == 1:
            return inside[0]
        raise UserError(f"{text}: {module_name} defines no Experiment class {qualname!r}")
    if text not in REGISTRY and not modules:
        raise UserError(
            f"no experiment {text!r} is known yet: name it as module:Class, or pass "
            "--module MODULE to import the module that defines it"
        )
    return REGISTRY.get(text)


def experiment_of(run: ExperimentRun, modules: Sequence[str]) -> AnyExperiment:
    """The class of a run's experiment: from ``--module``, else from the import path its
    manifest recorded."""
    import_modules(modules)
    manifest = run.manifest()
    if manifest.experiment_name not in REGISTRY:
        module_name = manifest.experiment_class.partition(":")[0]
        if module_name in ("__main__", "__mp_main__", ""):
            raise UserError(
                f"{manifest.experiment_name} was defined in a script ({module_name}); pass "
                "--module MODULE naming a module that defines it"
            )
        import_modules([module_name])
    return REGISTRY.get(manifest.experiment_name)


def emit(as_json: bool, data: Any, text: Callable[[], str] | str) -> None:
    """Print ``data`` as JSON, or the human text."""
    if as_json:
        click.echo(json.dumps(data, indent=2, default=json_default, allow_nan=False))
    else:
        click.echo(text() if callable(text) else text)


def json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def finite(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    """Rows as aligned columns, numbers on the right."""
    cells = [[str(c) for c in header], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    numeric = [all(_is_number(row[i]) for row in rows) and rows for i in range(len(header))]
    lines = []
    for row in cells:
        parts = [
            cell.rjust(width) if numeric[i] else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
