"""Commands that start work: allocate, retry, resume, replay.

``allocate``, ``retry`` and ``resume`` follow the run's progress until it ends, because a run on
the local engine lives in the process that started it. Their exit code says how it ended: 0
completed, 1 completed with failed leaves or not completed at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from scythe_oo.cli.base import (
    UserError,
    described,
    emit,
    experiment_of,
    find_run,
    finite,
    load_experiment,
    module_option,
    open_store,
    output_options,
    store_option,
)
from scythe_oo.definition.errors import RunFailedError
from scythe_oo.driver.allocate import allocate_run
from scythe_oo.driver.run import ExperimentRun
from scythe_oo.driver.sample_file import specs_from_file
from scythe_oo.driver.sources import SPEC_FILES
from scythe_oo.engine.protocol import Engine
from scythe_oo.engine.table import ENGINES, create_engine


def engine_option(func: Any) -> Any:
    return click.option(
        "--engine",
        type=click.Choice(sorted(ENGINES)),
        default=None,
        help="Where the work runs. allocate: the experiment's own choice (local by default); "
        "retry and resume: the engine the run used.",
    )(func)


def follow(run: ExperimentRun, as_json: bool) -> int:
    """Show progress until the run ends, then print its status; 0 when it completed."""
    try:
        run.wait(progress=None)
    except RunFailedError as exc:
        details = run.details()
        emit(as_json, details, f"scythe-oo: {exc}")
        return 1
    details = run.details()
    emit(as_json, details, f"{details['status']}: {run.uri}")
    return 0 if details["status"] == "completed" else 1


@click.command()
@click.argument("experiment")
@click.argument("specs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--version", help="v1.2.3, or a policy: bumpmajor, bumpminor, bumppatch, keep.")
@engine_option
@module_option
@store_option
@output_options
@described(
    "scythe-oo allocate examples.building_energy:SimulateEnergy specs.pq",
    "scythe-oo allocate simulate_energy specs.csv --module examples.building_energy "
    "--engine hatchet",
)
def allocate(
    experiment: str,
    specs_file: Path,
    version: str | None,
    engine: str | None,
    modules: tuple[str, ...],
    store: str | None,
    as_json: bool,
    debug: bool,
) -> int:
    """Allocate a run of EXPERIMENT over the specs in SPECS_FILE and follow it to the end.

    EXPERIMENT is module:Class, or an experiment's name in a --module. SPECS_FILE is Parquet
    (.pq, .parquet; `scythe-oo sample` writes one), CSV or JSON lines (.jsonl): one spec per
    row, one column per input field. Prints the run's URI first.
    """
    if specs_file.suffix.lower() not in SPEC_FILES:
        raise UserError(f"{specs_file}: a specs file ends in {', '.join(sorted(SPEC_FILES))}")
    cls = load_experiment(experiment, modules)
    run = allocate_run(
        cls,
        specs_from_file(cls, specs_file),
        version=version,
        store=open_store(store),
        engine=None if engine is None else create_engine(engine),
    )
    if not as_json:
        click.echo(run.uri)
    return follow(run, as_json)


def _engine_for(run: ExperimentRun, kind: str | None) -> Engine:
    return create_engine(kind or run.manifest().engine.get("kind") or "local")


@click.command()
@click.argument("run")
@engine_option
@module_option
@store_option
@output_options
@described("scythe-oo retry simulate_energy", takes_run=True)
def retry(
    run: str,
    engine: str | None,
    modules: tuple[str, ...],
    store: str | None,
    as_json: bool,
    debug: bool,
) -> int:
    """Run a finished run's failed specs again, in the same folder, and follow it to the end.

    The experiment's class is imported from where the run recorded it (or from --module).
    """
    found = find_run(run, store)
    found.experiment = experiment_of(found, modules)
    found.retry_failed(engine=_engine_for(found, engine))
    return follow(found, as_json)


@click.command()
@click.argument("run")
@engine_option
@module_option
@store_option
@output_options
@described("scythe-oo resume simulate_energy@v1.2.0", takes_run=True)
def resume(
    run: str,
    engine: str | None,
    modules: tuple[str, ...],
    store: str | None,
    as_json: bool,
    debug: bool,
) -> int:
    """Continue an interrupted run (its driver died, its workers were lost) and follow it to
    the end; finished work is not done again."""
    found = find_run(run, store)
    found.experiment = experiment_of(found, modules)
    found.resume(engine=_engine_for(found, engine))
    return follow(found, as_json)


@click.command()
@click.argument("run")
@click.argument("sort_index", type=int)
@click.option("--pdb", is_flag=True, help="Open the post-mortem debugger if the leaf raises.")
@click.option(
    "--scratch",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the leaf's outputs (default: a new temporary folder).",
)
@module_option
@store_option
@output_options
@described("scythe-oo replay simulate_energy 42 --pdb", takes_run=True)
def replay(
    run: str,
    sort_index: int,
    pdb: bool,
    scratch: Path | None,
    modules: tuple[str, ...],
    store: str | None,
    as_json: bool,
    debug: bool,
) -> int:
    """Run one leaf of a run again, here, through the same fetch/run/publish hooks.

    Its outputs go to a scratch folder, never into the run's tables; its ctx.log lines print
    as they come. The exit code is 0 when the leaf succeeded, 1 when it failed.
    """
    found = find_run(run, store)
    found.experiment = experiment_of(found, modules)
    result = found.replay(sort_index, pdb=pdb, scratch=scratch)
    data = attrs.asdict(result)
    data["scalars"] = {k: finite(v) for k, v in result.scalars.items()}
    emit(as_json, data, str(result))
    return 0 if result.ok else 1
