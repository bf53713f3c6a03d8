"""Running one leaf on a worker: fetch inputs, call ``run``, check and publish the output.

This is the worker side shared by every engine. The experiment instance is created and set up
once per process (``LeafHost``) and torn down when the process exits, as Lightning runs its
hooks: the framework, not the user, calls them, in a fixed order.
"""

from __future__ import annotations

import atexit
import functools
import io
import logging
import multiprocessing.util
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import ValidationError

from scythe_oo.errors import OutputValidationError
from scythe_oo.experiment import LeafContext
from scythe_oo.layout import RunLayout
from scythe_oo.outcome import LeafOutcome
from scythe_oo.schema import RESERVED_TABLE_NAMES, row_values
from scythe_oo.store.cache import FileCache

if TYPE_CHECKING:
    from scythe_oo.experiment import Experiment
    from scythe_oo.spec import ExperimentInputSpec
    from scythe_oo.store.base import ArtifactStore

log = logging.getLogger("scythe_oo.leaf")

DATAFRAME_INDEX_META = b"scythe.index"


@attrs.frozen(kw_only=True)
class RunContext:
    """What a worker needs to know about the run a leaf belongs to."""

    experiment_id: str
    store: ArtifactStore

    @functools.cached_property
    def layout(self) -> RunLayout:
        return RunLayout.from_experiment_id(self.experiment_id)


def leaf_id_for(sort_index: int) -> str:
    """Leaf ids are derived from the spec's position, so a rerun overwrites, never duplicates."""
    return f"{sort_index:09d}"


class LeafHost:
    """One per process: experiment instances that have run ``setup``, torn down at exit."""

    def __init__(self) -> None:
        self._instances: dict[type[Any], Experiment[Any, Any]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.cache = FileCache()
        atexit.register(self.shutdown)
        multiprocessing.util.Finalize(self, self.shutdown, exitpriority=100)

    def instance(self, cls: type[Experiment[Any, Any]]) -> Experiment[Any, Any]:
        with self._lock:
            found = self._instances.get(cls)
            if found is None:
                found = cls()
                found.setup()
                self._instances[cls] = found
            return found

    def shutdown(self) -> None:
        """Tear down every experiment set up in this process, once."""
        if os.getpid() != self._pid:
            return
        with self._lock:
            instances, self._instances = list(self._instances.values()), {}
        for instance in instances:
            try:
                instance.teardown()
            except Exception:
                log.exception("teardown of %s failed", type(instance).__name__)


_HOST: LeafHost | None = None


def leaf_host() -> LeafHost:
    """The process's LeafHost; a forked child gets its own, not its parent's."""
    global _HOST
    if _HOST is None or _HOST._pid != os.getpid():
        _HOST = LeafHost()
    return _HOST


class LeafTimeoutError(TimeoutError):
    """The leaf ran longer than its execution timeout."""


_RUNNING: list[tuple[float, float]] = []
"""(monotonic deadline, timeout in seconds) of each leaf running under a deadline."""

_TIMER_DUE: list[float] = []
"""When the interval timer will fire (monotonic), if it is armed; at most one entry."""


def _alarm(signum: int, frame: object) -> None:
    _TIMER_DUE.clear()
    if not _RUNNING:
        return  # the leaf that armed the timer has finished; the next one re-arms it
    due, seconds = min(_RUNNING)
    left = due - time.monotonic()
    if left <= 0.001:
        raise LeafTimeoutError(f"the leaf exceeded its execution timeout of {seconds:g}s")
    _arm(left)  # armed by an earlier leaf: wait for this one's own deadline


def _arm(seconds: float) -> None:
    if signal.getsignal(signal.SIGALRM) is not _alarm:
        signal.signal(signal.SIGALRM, _alarm)
    _TIMER_DUE[:] = [time.monotonic() + seconds]
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _disarm() -> None:
    """Stop the timer once a batch is over, so no alarm reaches an idle process."""
    if _TIMER_DUE and not _RUNNING:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _TIMER_DUE.clear()


class _Deadline:
    """Interrupt the leaf after ``seconds`` (main thread only; Python code only).

    Arming and disarming a timer around every leaf costs more than a tiny simulation, so the
    timer is left running between leaves: when it fires, the handler compares the clock with
    the running leaf's own deadline and either raises or re-arms for the time that is left.
    A leaf thus pays a clock read, and the timer is armed about once per timeout period. The
    handler is checked (and reinstalled if user code replaced it) whenever the timer is armed.
    A class rather than a generator-based context manager, which costs a microsecond more.
    """

    __slots__ = ("entry", "seconds")

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.entry: tuple[float, float] | None = None

    def __enter__(self) -> None:
        seconds = self.seconds
        if (
            seconds is None
            or seconds <= 0
            or threading.current_thread() is not threading.main_thread()
            or not hasattr(signal, "setitimer")
        ):
            return
        entry = self.entry = (time.monotonic() + seconds, seconds)
        _RUNNING.append(entry)
        if not _TIMER_DUE or _TIMER_DUE[0] > entry[0]:
            try:
                _arm(seconds)
            except BaseException:
                _RUNNING.remove(entry)
                raise

    def __exit__(self, *exc_info: object) -> None:
        if self.entry is not None:
            _RUNNING.remove(self.entry)
            self.entry = None


def execute_leaf(
    cls: type[Experiment[Any, Any]],
    spec: ExperimentInputSpec,
    run: RunContext,
    *,
    attempt: int = 1,
    worker_name: str = "local",
    timeout_seconds: float | None = None,
    log_sink: Callable[[str], None] | None = None,
    isolate_spec: bool = True,
) -> LeafOutcome:
    """Run one spec and report its outcome; never raises for errors of the user's code.

    ``isolate_spec`` hands ``run`` a copy of the spec, so a run that mutates it cannot affect
    a retry; a last attempt may skip the copy.
    """
    host = leaf_host()
    layout = run.layout
    sort_index = spec.sort_index
    leaf_id = leaf_id_for(sort_index)
    started = time.perf_counter()

    def upload(field: str, path: Path) -> str:
        return run.store.put_file(layout.result_file(field, leaf_id, "".join(path.suffixes)), path)

    ctx = LeafContext(
        workdir_prefix=f"scythe-{cls.name}-{leaf_id}-",
        sort_index=sort_index,
        experiment_id=run.experiment_id,
        leaf_id=leaf_id,
        attempt=attempt,
        worker_name=worker_name,
        fetch=host.cache.fetch,
        upload=upload,
        log_sink=log_sink,
    )
    try:
        experiment = host.instance(cls)
        with _Deadline(timeout_seconds):
            given = spec.model_copy() if isolate_spec else spec
            local_spec = experiment.fetch_inputs(given, ctx)
            try:
                raw = experiment.run(local_spec, ctx)
            except ValidationError as exc:
                if exc.title != cls.schema.output_type.__name__:
                    raise
                raise _output_error(cls, exc, sort_index) from None
        output = _validated_output(cls, raw, sort_index)
        output = experiment.publish_outputs(output, ctx)
        frames = output.dataframes
        dataframes = _write_dataframes(frames, run, leaf_id, sort_index) if frames else {}
        schema = cls.schema
        return LeafOutcome(
            sort_index=sort_index,
            leaf_id=leaf_id,
            ok=True,
            scalars=row_values(schema.scalar_outputs, output),
            file_refs=row_values(schema.file_outputs, output),
            dataframes=dataframes,
            attempts=attempt,
            worker=worker_name,
            wall_time=time.perf_counter() - started,
        )
    except Exception as exc:
        return LeafOutcome(
            sort_index=sort_index,
            leaf_id=leaf_id,
            ok=False,
            error_type=type(exc).__name__,
            error_message=_clip(str(exc), 4000),
            traceback=_clip(traceback.format_exc(), 12000),
            attempts=attempt,
            worker=worker_name,
            wall_time=time.perf_counter() - started,
        )
    finally:
        ctx.cleanup()


def run_specs(
    cls: type[Experiment[Any, Any]],
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
        _disarm()
    return outcomes


def _clip(text: str, limit: int) -> str:
    """Keep both ends of a long text: outcomes must stay small enough for queue payloads."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n... [{len(text) - limit} characters cut] ...\n{text[-half:]}"


def _validated_output(cls: type[Experiment[Any, Any]], raw: Any, sort_index: int) -> Any:
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
    cls: type[Experiment[Any, Any]], exc: ValidationError, sort_index: int
) -> OutputValidationError:
    fields = ", ".join(".".join(map(str, e["loc"])) or "<root>" for e in exc.errors())
    return OutputValidationError(
        f"{cls.name}: the output for spec #{sort_index} does not match "
        f"{cls.schema.output_type.__name__} (field(s): {fields}): {exc}"
    )


def _write_dataframes(
    frames: dict[str, Any], run: RunContext, leaf_id: str, sort_index: int
) -> dict[str, str]:
    keys: dict[str, str] = {}
    for name, frame in frames.items():
        if name in RESERVED_TABLE_NAMES or not name.isidentifier():
            raise OutputValidationError(
                f"dataframe name {name!r} of spec #{sort_index} is reserved or not a plain "
                f"identifier; {sorted(RESERVED_TABLE_NAMES)} are taken by final/. Rename it."
            )
        flat = frame.reset_index()
        index_names = [str(c) for c in flat.columns[: frame.index.nlevels]]
        flat.columns = [str(c) for c in flat.columns]
        table = pa.Table.from_pandas(flat, preserve_index=False)
        table = table.replace_schema_metadata(
            {DATAFRAME_INDEX_META: ",".join(index_names).encode()}
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        key = run.layout.leaf_dataframe(name, leaf_id)
        run.store.put_bytes(key, buffer.getvalue())
        keys[name] = key
    return keys
