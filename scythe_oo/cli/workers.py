"""Commands for workers: serve experiments on Hatchet, or list what a module defines."""

from __future__ import annotations

import logging
import os

import click

from scythe_oo.cli.base import UserError, described, emit, import_modules, output_options
from scythe_oo.definition.base import REGISTRY, AnyExperiment

NO_ENGINE = (
    "HATCHET_CLIENT_TOKEN is not set, so there is no Hatchet engine to serve. For one on this "
    'machine: `scripts/hatchet-local up` then `eval "$(scripts/hatchet-local env)"`; '
    "otherwise export the token your engine's admin gave you"
)


def _discovered(modules: tuple[str, ...]) -> list[AnyExperiment]:
    import_modules(modules)
    found = REGISTRY.discover(modules)
    if not found:
        raise UserError(f"no Experiment subclasses found in {', '.join(modules)}")
    return found


@click.command()
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@click.option("--debug", is_flag=True, help="On an error, show its traceback too.")
@described("scythe-oo worker examples.building_energy")
def worker(modules: tuple[str, ...], debug: bool) -> int:
    """Serve every Experiment found in the given modules or packages through Hatchet.

    Imports each MODULE (recursing into packages). Roles and labels come from SCYTHE_WORKER_*,
    the Hatchet connection from HATCHET_CLIENT_*. Runs until stopped; it prints only logs.
    """
    if not os.environ.get("HATCHET_CLIENT_TOKEN"):
        raise UserError(NO_ENGINE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    from scythe_oo.engines.hatchet.worker import WorkerConfig  # hatchet_sdk: workers only

    WorkerConfig().start(experiments=_discovered(modules))
    return 0


@click.command(name="list")
@click.argument("modules", nargs=-1, required=True, metavar="MODULE...")
@output_options
@described("scythe-oo list examples.building_energy")
def list_experiments(modules: tuple[str, ...], as_json: bool, debug: bool) -> int:
    """List the experiments the given modules or packages define: name and class."""
    found = _discovered(modules)
    rows = [{"name": c.name, "class": f"{c.__module__}.{c.__qualname__}"} for c in found]
    emit(as_json, rows, "\n".join(f"{r['name']}\t{r['class']}" for r in rows))
    return 0
