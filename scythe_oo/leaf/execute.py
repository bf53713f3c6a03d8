"""Running one leaf: fetch its inputs, call ``run``, check and publish the output.

This is the worker side shared by every engine. Whatever the user's code does, a leaf ends as
one outcome: a row of scalars, or a row of failures that says what went wrong.
"""

from __future__ import annotations

import functools
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import attrs
import pandas as pd
import pyarrow as pa
from pydantic import ValidationError

from scythe_oo.definition.base import AnyExperiment, ExperimentBase
from scythe_oo.definition.context import LeafContext
from scythe_oo.definition.errors import OutputValidationError
from scythe_oo.definition.plain import exactness, plain_fields
from scythe_oo.definition.spec import ExperimentInputSpec, ExperimentOutputSpec
from scythe_oo.leaf.deadline import Deadline, disarm
from scythe_oo.leaf.host import leaf_host
from scythe_oo.leaf.logbook import LeafLog
from scythe_oo.leaf.memory import peak_rss_mib, reset_peak
from scythe_oo.leaf.outcome import LeafOutcome
from scythe_oo.leaf.outcome_table import OutcomeRecorder, outcomes_of
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


def run_batch(
    cls: AnyExperiment,
    specs: Iterable[ExperimentInputSpec],
    run: RunContext,
    *,
    retries: int,
    worker_name: str,
    timeout_seconds: float | None = None,
    log_sink: Callable[[str], None] | None = None,
    first_attempt: int = 1,
    on_error: Callable[[BaseException], None] | None = None,
) -> pa.Table:
    """Run specs one after another and return their outcome table; every spec yields exactly
    one row. A failed leaf is tried again up to ``retries`` times, after a short backoff.
    ``ctx.log`` lines are kept in the run folder by a ``LeafLog`` per attempt, and a failed
    leaf's last lines join its failure row. ``on_error`` sees each exception while the leaf's
    frames and workdir still exist (a replay's post-mortem debugger).

    Whatever a leaf does (raise, call sys.exit, return a bad output), it ends as a row: the
    user's errors never escape. The loop is lean because a tiny simulation costs less than a
    framework that does per-leaf work it could do per batch.
    """
    recorder = OutcomeRecorder(cls.schema)
    leaves = _Leaves(cls, run, recorder, worker_name, timeout_seconds, log_sink, on_error)
    reset_peak()
    try:
        for spec in specs:  # the collector stays on: user code may well create cycles
            attempt = first_attempt
            while not leaves.attempt(spec, attempt, last=attempt - first_attempt >= retries):
                time.sleep(min(0.05 * 2**attempt, 2.0))
                attempt += 1
    finally:
        disarm()
    return recorder.table(peak_rss_mib())


def run_here(
    cls: AnyExperiment,
    spec: ExperimentInputSpec,
    run: RunContext,
    *,
    worker_name: str,
    log_sink: Callable[[str], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
) -> LeafOutcome:
    """One leaf, once, with no deadline (a breakpoint must not time out): what ``replay`` and
    ``debug`` run in the researcher's own process, through the same code as every worker."""
    table = run_batch(
        cls, [spec], run, retries=0, worker_name=worker_name, log_sink=log_sink, on_error=on_error
    )
    return outcomes_of(cls.schema, table)[0]


class _Leaves:
    """Runs one leaf after another for a batch, sharing what leaves can share: the
    experiment instance, one LeafContext (reset per leaf) and the hooks that are no-ops."""

    def __init__(
        self,
        cls: AnyExperiment,
        run: RunContext,
        recorder: OutcomeRecorder,
        worker_name: str,
        timeout_seconds: float | None,
        log_sink: Callable[[str], None] | None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        host = leaf_host()
        self.cls = cls
        self.schema = cls.schema
        self.run = run
        self.layout = run.layout
        self.host = host
        self.recorder = recorder
        self.worker = worker_name
        self.timeout = timeout_seconds
        self.on_error = on_error
        self.experiment: ExperimentBase[Any, Any] | None = None
        self.ctx = LeafContext(
            workdir_prefix=f"scythe-{cls.name}-",
            sort_index=-1,
            experiment_id=run.experiment_id,
            leaf_id="",
            worker_name=worker_name,
            fetch=host.cache.fetch,
            upload=self._upload,
            log_sink=log_sink,
        )
        # The default hooks do nothing for a schema without files: skip the calls.
        self.deadline = Deadline(timeout_seconds)
        self.intact = _intact_test(self.schema.output_type)
        self.fetches = bool(self.schema.file_inputs) or _overrides(cls, "fetch_inputs")
        self.publishes = bool(self.schema.file_outputs) or _overrides(cls, "publish_outputs")

    def _instance(self) -> ExperimentBase[Any, Any]:
        """The process's instance of the experiment, set up on first use: a setup that fails
        is every leaf's failure, so it is tried again for the next leaf."""
        self.experiment = self.host.instance(self.cls)
        return self.experiment

    def _upload(self, field: str, path: Path) -> str:
        key = self.layout.result_file(field, self.ctx.leaf_id, "".join(path.suffixes))
        return self.run.store.put_file(key, path)

    def attempt(self, spec: ExperimentInputSpec, attempt: int, *, last: bool) -> bool:
        """Run ``spec`` once; record its outcome when it succeeds or this is its last try.
        True when recorded."""
        cls, ctx = self.cls, self.ctx
        sort_index = spec.sort_index
        ctx.sort_index, ctx.leaf_id, ctx.attempt = sort_index, leaf_id(sort_index), attempt
        book = LeafLog(
            self.run.store, self.layout, ctx.leaf_id, attempt=attempt, worker=self.worker
        )
        ctx.log_keeper = book.write
        started = time.perf_counter()
        try:
            experiment = self.experiment or self._instance()
            deadline = self.deadline
            deadline.sort_index = sort_index
            with deadline:
                given = spec if last else spec.model_copy()  # a retry gets the spec untouched
                local_spec = experiment.fetch_inputs(given, ctx) if self.fetches else given
                try:
                    raw = experiment.run(local_spec, ctx)
                except ValidationError as exc:
                    if exc.title != self.schema.output_type.__name__:
                        raise
                    raise _output_error(cls, exc, sort_index) from None
            deadline.check()
            output = _validated_output(cls, raw, sort_index, self.intact)
            if self.publishes:
                output = experiment.publish_outputs(output, ctx)
            frames = output.dataframes
            dataframes = (
                write_user_tables(
                    frames,
                    store=self.run.store,
                    layout=self.layout,
                    leaf=ctx.leaf_id,
                    sort_index=sort_index,
                    index_levels=self.schema.index_columns(spec.computed_features),
                    known=self.host.column_types,
                )
                if frames
                else None
            )
            self.recorder.ok(
                sort_index,
                output,
                dataframes,
                attempt,
                self.worker,
                time.perf_counter() - started,
            )
            return True
        except BaseException as exc:  # sys.exit() or KeyboardInterrupt in run is a failure too
            if self.on_error is not None:
                self.on_error(exc)
            if not last:
                return False
            self.recorder.fail(
                sort_index,
                type(exc).__name__,
                str(exc),
                traceback.format_exc(),
                attempt,
                self.worker,
                time.perf_counter() - started,
                book.tail(),
            )
            return True
        finally:
            ctx.cleanup()
            book.close()


_NOT_CHECKED = frozenset({"dataframes"})
"""The output field ``_intact`` checks itself: a dict of tables, not a plain value."""


def _overrides(cls: AnyExperiment, hook: str) -> bool:
    return getattr(cls, hook) is not getattr(ExperimentBase, hook)


def _validated_output(
    cls: AnyExperiment, raw: Any, sort_index: int, intact: Callable[[Any], bool]
) -> Any:
    output_type = cls.schema.output_type
    if raw is None:
        raise OutputValidationError(
            f"{cls.name}.run returned None for spec #{sort_index}; return a {output_type.__name__}."
        )
    if type(raw) is output_type and intact(raw):
        return raw  # the recorder copies its values at once: later changes cannot reach them
    try:
        # The validator itself: model_validate wraps the same call in 1.4 us of Python, a
        # tenth of what the framework spends on a tiny leaf.
        return output_type.__pydantic_validator__.validate_python(raw)
    except ValidationError as exc:
        raise _output_error(cls, exc, sort_index) from None


def _intact_test(output_type: type[ExperimentOutputSpec]) -> Callable[[Any], bool]:
    """A test of whether an output still holds values that revalidating it would keep as they
    are (see ``definition.plain``). An output changed after construction (``out.y = "1.5"``)
    or built without validation (``model_construct``) into anything else is revalidated.
    Revalidating every output cost 0.4 s of a 2.5 s run of 10^5 tiny leaves."""
    fields = plain_fields(output_type, _NOT_CHECKED)
    if fields is None:
        return lambda output: False
    holds = exactness(fields)

    def intact(output: Any) -> bool:
        values = output.__dict__
        frames = values.get("dataframes")
        return (
            holds(values)
            and type(frames) is dict
            and (
                not frames
                or all(type(k) is str and isinstance(df, pd.DataFrame) for k, df in frames.items())
            )
        )

    return intact


def _output_error(
    cls: AnyExperiment, exc: ValidationError, sort_index: int
) -> OutputValidationError:
    fields = ", ".join(".".join(map(str, e["loc"])) or "<root>" for e in exc.errors())
    return OutputValidationError(
        f"{cls.name}: the output for spec #{sort_index} does not match "
        f"{cls.schema.output_type.__name__} (field(s): {fields}): {exc}"
    )
