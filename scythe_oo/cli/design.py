"""Commands that prepare a sweep: sample specs into a file, estimate what they will cost."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import click
import pyarrow.parquet as pq

from scythe_oo.cli.base import (
    UserError,
    described,
    emit,
    load_experiment,
    module_option,
    output_options,
)
from scythe_oo.definition.cpus import usable_cpus
from scythe_oo.driver.estimate import estimate_sweep
from scythe_oo.driver.sample_file import specs_from_file, write_sample_file
from scythe_oo.engines.local import LocalEngine

METHODS = ("lhs", "sobol", "halton", "random", "grid")


def _value(text: str) -> Any:
    """A JSON value if the text is one (``3``, ``true``, ``"a"``), else the text itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def pairs(items: Sequence[str], option: str, parse: Any = _value) -> dict[str, Any]:
    """``FIELD=VALUE`` items, or JSON objects, merged into one dict."""
    merged: dict[str, Any] = {}
    for item in items:
        if item.lstrip().startswith("{"):
            try:
                found = json.loads(item)
            except ValueError as exc:
                raise UserError(f"{option} {item!r}: not valid JSON ({exc})") from None
            merged.update({k: parse(v) if isinstance(v, str) else v for k, v in found.items()})
            continue
        field, sep, value = item.partition("=")
        if not sep or not field:
            raise UserError(f"{option} {item!r}: write FIELD=VALUE or a JSON object")
        merged[field.strip()] = parse(value)
    return merged


def _listed(text: str) -> list[Any]:
    if text.lstrip().startswith("["):
        found = _value(text)
        if isinstance(found, list):
            return found
    return [_value(part) for part in text.split(",")]


def _range(text: Any) -> tuple[float, float]:
    values = text if isinstance(text, list) else _listed(str(text))
    if len(values) != 2:
        raise UserError(f"--ranges value {text!r}: write LOW,HIGH")
    return float(values[0]), float(values[1])


@click.command()
@click.argument("experiment")
@click.argument("n", type=int, required=False)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--method", type=click.Choice(METHODS), default="lhs", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--fixed", multiple=True, metavar="FIELD=VALUE", help="Hold a field at a value.")
@click.option("--choices", multiple=True, metavar="FIELD=A,B,...", help="A field's values.")
@click.option("--ranges", multiple=True, metavar="FIELD=LOW,HIGH", help="Narrow a field.")
@click.option("--levels", multiple=True, metavar="N|FIELD=N", help="Grid levels.")
@module_option
@output_options
@described(
    "scythe-oo sample examples.building_energy:SimulateEnergy 1000 -o specs.pq "
    "--choices weather_file=a.csv,b.csv --fixed economizer=none",
    "scythe-oo sample simulate_energy --module examples.building_energy --method grid "
    "--levels 3 -o grid.pq",
)
def sample(
    experiment: str,
    n: int | None,
    output: Path,
    method: str,
    seed: int,
    fixed: tuple[str, ...],
    choices: tuple[str, ...],
    ranges: tuple[str, ...],
    levels: tuple[str, ...],
    modules: tuple[str, ...],
    as_json: bool,
    debug: bool,
) -> int:
    """Draw N specs of EXPERIMENT from its input schema into a Parquet specs file.

    As MyInput.sample: --fixed, --choices, --ranges and --levels take FIELD=VALUE (a value is
    read as JSON when it is JSON) or a JSON object, and repeat. A grid needs no N.
    allocate and estimate read the file, and the run records how it was drawn.
    """
    cls = load_experiment(experiment, modules)
    if n is None and method != "grid":
        raise UserError(f"--method {method} needs N, the number of specs to draw")
    grid_levels: int | dict[str, int] | None = None
    if levels:
        if len(levels) == 1 and "=" not in levels[0] and not levels[0].startswith("{"):
            grid_levels = int(levels[0])
        else:
            grid_levels = {k: int(v) for k, v in pairs(levels, "--levels").items()}
    path = write_sample_file(
        cls,
        n,
        output,
        method=method,
        seed=seed,
        fixed=pairs(fixed, "--fixed"),
        choices=pairs(choices, "--choices", _listed),
        ranges={k: _range(v) for k, v in pairs(ranges, "--ranges", str).items()} or None,
        levels=grid_levels,
    )
    count = pq.read_metadata(path).num_rows
    data = {"path": str(path), "n": count, "method": method, "seed": seed}
    emit(as_json, data, f"wrote {count} specs of {cls.name} to {path} ({method}, seed {seed})")
    return 0


@click.command()
@click.argument("experiment")
@click.argument("specs_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--pilot", type=int, default=50, show_default=True, help="Specs to run here.")
@click.option("--workers", type=int, default=None, help="Workers of the projected sweep.")
@click.option("--cost-per-core-hour", type=float, default=None, help="Price, for the cost.")
@click.option("--pilot-workers", type=int, default=None, help="Processes for the pilot.")
@click.option("--seed", type=int, default=0, show_default=True)
@module_option
@output_options
@described(
    "scythe-oo estimate examples.building_energy:SimulateEnergy specs.pq --pilot 50 "
    "--workers 500 --cost-per-core-hour 0.015"
)
def estimate(
    experiment: str,
    specs_file: Path,
    pilot: int,
    workers: int | None,
    cost_per_core_hour: float | None,
    pilot_workers: int | None,
    seed: int,
    modules: tuple[str, ...],
    as_json: bool,
    debug: bool,
) -> int:
    """Run a random pilot of the specs in SPECS_FILE here and project the whole sweep: wall
    time, core-hours, cost, and suggested settings. Writes no run folder."""
    cls = load_experiment(experiment, modules)
    found = estimate_sweep(
        cls,
        specs_from_file(cls, specs_file),
        pilot=pilot,
        workers=workers or usable_cpus(),
        cost_per_core_hour=cost_per_core_hour,
        seed=seed,
        engine=LocalEngine(max_workers=pilot_workers, min_batch_seconds=0.0),
        progress=None,
    )
    data = attrs.asdict(found)
    data.update(
        failure_rate=found.failure_rate,
        core_hours=found.core_hours,
        wall_seconds=found.wall_seconds,
        cost=found.cost,
        relative_error=found.relative_error,
        suggested_min_batch_seconds=found.min_batch_seconds,
        suggested_timeout=found.timeout,
    )
    emit(as_json, data, str(found))
    return 0
