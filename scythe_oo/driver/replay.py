"""Running one leaf here, in the researcher's own process: a spec of a run again, or a new one.

A leaf that failed on a worker is a traceback in a table. To fix it the researcher wants the
leaf in front of them: in their own process, with ``breakpoint()`` and the debugger working.
``run.replay(i)`` reads spec ``i`` from the run folder, and ``MyExperiment.debug(spec)`` takes
one in hand. Both run it through ``run_batch``, the function every worker uses (setup once,
fetch_inputs, run, output validation, publish_outputs), but with no deadline (a breakpoint must
not time out) and with a scratch store in place of the run's: output files, user tables and
the leaf's log land in the scratch folder, never in the run's tables. ``ctx.log`` lines are
also printed to stderr as they come.
"""

from __future__ import annotations

import datetime as dt
import pdb as debugger
import sys
import tempfile
from pathlib import Path
from typing import Any

import attrs
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.driver.validate import fields_of
from scythe_oo.leaf.execute import RunContext, run_here
from scythe_oo.leaf.logbook import read_leaf_log
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.runfolder.layout import TIMESTAMP_FORMAT, RunLayout
from scythe_oo.runfolder.spec_columns import spec_json
from scythe_oo.runfolder.tables import open_parquet
from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.local import LocalStore

WORKER_NAME = "replay"


@attrs.frozen(kw_only=True, repr=False)
class LeafRun:
    """What one leaf run here produced: its values or its error, its log, and where its
    output files and tables are (under ``folder``)."""

    experiment: str
    sort_index: int
    ok: bool
    scalars: dict[str, Any]
    files: dict[str, str | None]
    """Output file fields: URIs of the copies in the scratch folder."""
    tables: dict[str, Path]
    """User tables (``dataframes``), each a Parquet file in the scratch folder."""
    error_type: str | None
    error_message: str | None
    traceback: str | None
    log: str
    folder: Path
    wall_time: float

    def table(self, name: str) -> pd.DataFrame:
        """One of the leaf's user tables, as pandas."""
        try:
            return pd.read_parquet(self.tables[name])
        except KeyError:
            known = ", ".join(sorted(self.tables)) or "none"
            raise KeyError(f"the leaf returned no table {name!r}; it returned: {known}") from None

    def __repr__(self) -> str:
        outcome = "ok" if self.ok else f"{self.error_type}: {self.error_message}"
        return f"LeafRun({self.experiment} spec #{self.sort_index}: {outcome[:200]})"

    def __str__(self) -> str:
        head = f"{self.experiment} spec #{self.sort_index}: "
        if self.ok:
            values = ", ".join(f"{k}={v!r}" for k, v in {**self.scalars, **self.files}.items())
            text = f"{head}ok in {self.wall_time:.3g} s: {values}"
        else:
            text = f"{head}{self.error_type}: {self.error_message}\n{self.traceback or ''}"
        return f"{text.rstrip()}\n(outputs in {self.folder})"


def replay_leaf(
    cls: AnyExperiment,
    store: ArtifactStore,
    layout: RunLayout,
    sort_index: int,
    *,
    pdb: bool = False,
    scratch: str | Path | None = None,
) -> LeafRun:
    """Run spec ``sort_index`` of the run at ``layout`` here; outputs go to ``scratch``."""
    spec = cls.schema.input_type.model_validate_json(_spec_json(cls, store, layout, sort_index))
    return _run_here(cls, spec, layout, pdb=pdb, scratch=scratch)


def debug_leaf(
    cls: AnyExperiment, spec: Any, *, pdb: bool = False, scratch: str | Path | None = None
) -> LeafRun:
    """Validate ``spec`` (a spec or a dict of its fields) and run it here, as a leaf would."""
    input_type = cls.schema.input_type
    checked = input_type.model_validate(fields_of(input_type, spec))
    stamp = dt.datetime.now(dt.UTC).strftime(TIMESTAMP_FORMAT)
    layout = RunLayout(cls.name, SemVer(0, 0, 0), stamp)
    index = max(checked.sort_index, 0)
    checked = checked.model_copy(update={"sort_index": index, "experiment_id": layout.root})
    return _run_here(cls, checked, layout, pdb=pdb, scratch=scratch)


def _spec_json(cls: AnyExperiment, store: ArtifactStore, layout: RunLayout, sort_index: int) -> str:
    with open_parquet(store, layout.specs) as parquet:
        for batch in parquet.iter_batches():
            table = pa.Table.from_batches([batch])
            found = table.filter(pc.equal(table["sort_index"], sort_index))
            if found.num_rows:
                return spec_json(cls.schema.input_type, found)[0]
    raise IndexError(f"no spec #{sort_index} in {store.uri(layout.specs)}")


def _run_here(
    cls: AnyExperiment,
    spec: ExperimentInputSpec,
    layout: RunLayout,
    *,
    pdb: bool,
    scratch: str | Path | None,
) -> LeafRun:
    folder = Path(scratch) if scratch is not None else Path(tempfile.mkdtemp(prefix="scythe-"))
    scratch_store = LocalStore(root=folder)
    run = RunContext(experiment_id=layout.experiment_id, store=scratch_store)

    def show(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def post_mortem(exc: BaseException) -> None:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        debugger.post_mortem(exc.__traceback__)

    outcome = run_here(
        cls,
        spec,
        run,
        worker_name=WORKER_NAME,
        log_sink=show,
        on_error=post_mortem if pdb else None,
    )
    return _leaf_run(cls, outcome, scratch_store, layout)


def _leaf_run(
    cls: AnyExperiment, outcome: LeafOutcome, store: LocalStore, layout: RunLayout
) -> LeafRun:
    return LeafRun(
        experiment=cls.name,
        sort_index=outcome.sort_index,
        ok=outcome.ok,
        scalars=dict(outcome.scalars),
        files=dict(outcome.file_refs),
        tables={name: store.path_of(key) for name, key in outcome.dataframes.items()},
        error_type=outcome.error_type,
        error_message=outcome.error_message,
        traceback=outcome.traceback,
        log=read_leaf_log(store, layout, outcome.sort_index),
        folder=store.root,
        wall_time=outcome.wall_time,
    )
