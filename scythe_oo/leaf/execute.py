"""Running one leaf: fetch its inputs, call ``run``, check and publish the output.

This is the worker side shared by every engine. Whatever the user's code does, a leaf ends as
one outcome: a row of scalars, or a row of failures that says what went wrong.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from pydantic import ValidationError

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.context import LeafContext
from scythe_oo.definition.errors import OutputValidationError
from scythe_oo.definition.schema import row_values
from scythe_oo.definition.spec import ExperimentInputSpec
from scythe_oo.leaf.deadline import Deadline, disarm
from scythe_oo.leaf.host import leaf_host
from scythe_oo.leaf.logbook import LeafLog
from scythe_oo.leaf.memory import peak_rss_mib, reset_peak
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.leaf.user_tables import write_user_tables
from scythe_oo.runfolder.layout import RunLayout, leaf_id
from scythe_oo.storage.base import ArtifactStore


@attrs.frozen(kw_only=True)
class RunContext:
    """What a worker needs to know about the run a leaf belongs to."""

    experiment_id: str
    store: ArtifactStore

    @functools.cached_property
    def layout(self) -> RunLayout:
        return RunLayout.from_experiment_id(self.experiment_id)


def execute_leaf(
    cls: AnyExperiment,
    spec: ExperimentInputSpec,
    run: RunContext,
    *,
    attempt: int = 1,
    worker_name: str = "local",
    timeout_seconds: float | None = None,
    log_sink: Callable[[str], None] | None = None,
    isolate_spec: bool = True,
    on_error: Callable[[BaseException], None] | None = None,
) -> LeafOutcome:
    """Run one spec and report its outcome; never raises for errors of the user's code.

    ``isolate_spec`` hands ``run`` a copy of the spec, so a run that mutates it cannot affect
    a retry; a last attempt may skip the copy. ``on_error`` sees the exception while the leaf's
    frames and workdir still exist (a replay's post-mortem debugger). ``ctx.log`` lines are
    kept in the run folder by a ``LeafLog``; a failed leaf's last lines join its failure row.
    """
    host = leaf_host()
    layout = run.layout
    sort_index = spec.sort_index
    leaf = leaf_id(sort_index)
    started = time.perf_counter()

    def upload(field: str, path: Path) -> str:
        return run.store.put_file(layout.result_file(field, leaf, "".join(path.suffixes)), path)

    book = LeafLog(run.store, layout, leaf, attempt=attempt, worker=worker_name)

    ctx = LeafContext(
        workdir_prefix=f"scythe-{cls.name}-{leaf}-",
        sort_index=sort_index,
        experiment_id=run.experiment_id,
        leaf_id=leaf,
        attempt=attempt,
        worker_name=worker_name,
        fetch=host.cache.fetch,
        upload=upload,
        log_sink=log_sink,
        log_keeper=book.write,
    )
    try:
        experiment = host.instance(cls)
        deadline = Deadline(timeout_seconds, sort_index)
        with deadline:
            given = spec.model_copy() if isolate_spec else spec
            local_spec = experiment.fetch_inputs(given, ctx)
            try:
                raw = experiment.run(local_spec, ctx)
            except ValidationError as exc:
                if exc.title != cls.schema.output_type.__name__:
                    raise
                raise _output_error(cls, exc, sort_index) from None
        deadline.check()
        output = _validated_output(cls, raw, sort_index)
        output = experiment.publish_outputs(output, ctx)
        schema = cls.schema
        frames = output.dataframes
        dataframes = (
            write_user_tables(
                frames,
                store=run.store,
                layout=layout,
                leaf=leaf,
                sort_index=sort_index,
                index_levels=schema.index_columns(spec.computed_features),
                known=host.column_types,
            )
            if frames
            else {}
        )
        return LeafOutcome(
            sort_index=sort_index,
            leaf_id=leaf,
            ok=True,
            scalars=row_values(schema.scalar_outputs, output),
            file_refs=row_values(schema.file_outputs, output),
            dataframes=dataframes,
            attempts=attempt,
            worker=worker_name,
            wall_time=time.perf_counter() - started,
            finished_at=time.time(),
        )
    except BaseException as exc:  # sys.exit() or KeyboardInterrupt in run is this leaf's failure
        if on_error is not None:
            on_error(exc)
        return LeafOutcome.failure(
            sort_index,
            type(exc).__name__,
            str(exc),
            traceback=traceback.format_exc(),
            attempts=attempt,
            worker=worker_name,
            wall_time=time.perf_counter() - started,
            log_tail=book.tail(),
        )
    finally:
        ctx.cleanup()
        book.close()


def run_specs(
    cls: AnyExperiment,
    specs: Sequence[ExperimentInputSpec],
    run: RunContext,
    *,
    retries: int,
    worker_name: str,
    timeout_seconds: float | None = None,
    log_sink: Callable[[str], None] | None = None,
    first_attempt: int = 1,
) -> list[LeafOutcome]:
    """Run specs one after another, trying each failed leaf again up to ``retries`` times with
    a short backoff; every spec yields exactly one outcome."""
    outcomes = []
    reset_peak()
    try:
        for spec in specs:  # the collector stays on: user code may well create cycles
            attempt = first_attempt
            while True:
                last = attempt - first_attempt >= retries
                outcome = execute_leaf(
                    cls,
                    spec,
                    run,
                    attempt=attempt,
                    worker_name=worker_name,
                    timeout_seconds=timeout_seconds,
                    log_sink=log_sink,
                    isolate_spec=not last,
                )
                if outcome.ok or last:
                    break
                time.sleep(min(0.05 * 2**attempt, 2.0))
                attempt += 1
            outcomes.append(outcome)
    finally:
        disarm()
    peak = peak_rss_mib()
    for outcome in outcomes:
        outcome.peak_rss_mib = peak
    return outcomes


def _validated_output(cls: AnyExperiment, raw: Any, sort_index: int) -> Any:
    output_type = cls.schema.output_type
    if raw is None:
        raise OutputValidationError(
            f"{cls.name}.run returned None for spec #{sort_index}; return a {output_type.__name__}."
        )
    try:
        return output_type.model_validate(raw)
    except ValidationError as exc:
        raise _output_error(cls, exc, sort_index) from None


def _output_error(
    cls: AnyExperiment, exc: ValidationError, sort_index: int
) -> OutputValidationError:
    fields = ", ".join(".".join(map(str, e["loc"])) or "<root>" for e in exc.errors())
    return OutputValidationError(
        f"{cls.name}: the output for spec #{sort_index} does not match "
        f"{cls.schema.output_type.__name__} (field(s): {fields}): {exc}"
    )
