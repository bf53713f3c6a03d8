"""Experiment: the class researchers subclass to describe one simulation.

Like a Scrapy Spider, an experiment is a subclass with a few typed class attributes and a
``run`` method; a metaclass registers it when the ``class`` statement runs, checks its generic
parameters and settings, and reports mistakes right there, naming the class.
"""

from __future__ import annotations

import abc
import inspect
import logging
import re
import shutil
import tempfile
import typing
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs

from scythe_oo.errors import ExperimentDefinitionError
from scythe_oo.labels import WorkerLabel
from scythe_oo.recursion import RecursionPolicy
from scythe_oo.schema import ExperimentSchema, FieldKind, file_uri
from scythe_oo.spec import ExperimentInputSpec, ExperimentOutputSpec
from scythe_oo.timeouts import Timeouts

if TYPE_CHECKING:
    from scythe_oo.engine.base import Engine
    from scythe_oo.layout import SemVer
    from scythe_oo.run import ExperimentRun
    from scythe_oo.store.base import ArtifactStore

InputT = TypeVar("InputT", bound=ExperimentInputSpec)
OutputT = TypeVar("OutputT", bound=ExperimentOutputSpec)

VERSION_POLICIES = ("bumpmajor", "bumpminor", "bumppatch", "keep")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")

logger = logging.getLogger("scythe_oo.leaf")


def snake_case(name: str) -> str:
    """``SimulateEnergy`` -> ``simulate_energy``; ``HTTPFetch`` -> ``http_fetch``."""
    step = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", step).lower()


@attrs.define(kw_only=True)
class LeafContext:
    """What ``run`` may use besides its spec: a scratch directory, its position, a logger.

    ``workdir`` is a fresh directory for this leaf only, removed after the leaf finishes; write
    output files there and return their Paths in FileReference fields.
    """

    sort_index: int
    experiment_id: str
    leaf_id: str
    attempt: int = 1
    worker_name: str = "local"
    fetch: Callable[[str], Path] = attrs.field(repr=False)
    upload: Callable[[str, Path], str] = attrs.field(repr=False)
    log_sink: Callable[[str], None] | None = attrs.field(default=None, repr=False)
    workdir_prefix: str = attrs.field(default="scythe-leaf-", repr=False)
    _workdir: Path | None = attrs.field(default=None, init=False, repr=False)

    @property
    def workdir(self) -> Path:
        """Created on first use: most simulations never touch the disk, and a directory per
        leaf would otherwise cost more than a tiny simulation itself."""
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix=self.workdir_prefix))
        return self._workdir

    def cleanup(self) -> None:
        """Remove the workdir, if the leaf created one."""
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def log(self, message: str) -> None:
        """Send a line to the run's log (Hatchet's task log on the distributed engine)."""
        line = f"[{self.experiment_id} #{self.sort_index}] {message}"
        if self.log_sink is not None:
            self.log_sink(line)
        logger.info(line)


def _is_concrete(tp: Any) -> bool:
    return isinstance(tp, type)


class ExperimentMeta(abc.ABCMeta):
    """Registers every concrete Experiment subclass and validates it at class creation.

    It only registers; the registry is its own object. Classes whose generic parameters are still
    TypeVars, or that set ``abstract = True`` in their body, are bases and are not registered.
    """

    def __new__(
        mcs, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> ExperimentMeta:
        cls = super().__new__(mcs, cls_name, bases, namespace, **kwargs)
        if namespace.get("__module__") == __name__ and cls_name == "Experiment":
            return cls
        generic = _resolve_generic_parameters(cls)
        cls.__scythe_generic__ = generic  # type: ignore[attr-defined]
        if namespace.get("abstract", False) or any(isinstance(t, TypeVar) for t in generic):
            return cls
        for role, tp in zip(("input", "output"), generic, strict=True):
            if not _is_concrete(tp):
                _fail(
                    cls,
                    f"the {role} type {tp!r} is not a class; write Experiment[MyInput, MyOutput] "
                    "with your ExperimentInputSpec and ExperimentOutputSpec subclasses.",
                )
        cls.abstract = False  # type: ignore[attr-defined]
        _validate_experiment_class(cls, namespace, generic)
        from scythe_oo.registry import REGISTRY

        REGISTRY.register(cls)  # type: ignore[arg-type]
        return cls


def _resolve_generic_parameters(cls: type) -> tuple[Any, Any]:
    """InputT and OutputT of ``cls``, following generic intermediate bases."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        if origin is None or not (isinstance(origin, type) and issubclass(origin, Experiment)):
            continue
        args = typing.get_args(base)
        if origin is Experiment:
            if len(args) != 2:
                raise ExperimentDefinitionError(
                    f"{cls.__qualname__}: write Experiment[InputSpec, OutputSpec] with two types"
                )
            return args[0], args[1]
        mapping = dict(zip(getattr(origin, "__parameters__", ()), args, strict=False))
        parent: tuple[Any, Any] = origin.__scythe_generic__  # type: ignore[attr-defined]
        return mapping.get(parent[0], parent[0]), mapping.get(parent[1], parent[1])
    for base in cls.__mro__[1:]:
        found = base.__dict__.get("__scythe_generic__")
        if found is not None:
            return typing.cast(tuple[Any, Any], found)
    return InputT, OutputT


def _fail(cls: type, message: str) -> typing.NoReturn:
    raise ExperimentDefinitionError(f"{cls.__module__}.{cls.__qualname__}: {message}")


def _validate_experiment_class(cls: type, namespace: dict[str, Any], generic: Any) -> None:
    input_type, output_type = generic
    if not issubclass(input_type, ExperimentInputSpec):
        _fail(
            cls,
            f"the input type {input_type.__name__} must subclass ExperimentInputSpec "
            "(write Experiment[MyInput, MyOutput]).",
        )
    if not issubclass(output_type, ExperimentOutputSpec):
        _fail(
            cls,
            f"the output type {output_type.__name__} must subclass ExperimentOutputSpec "
            "(write Experiment[MyInput, MyOutput]).",
        )
    if "name" not in namespace:
        cls.name = snake_case(cls.__name__)  # type: ignore[attr-defined]
    name = cls.name  # type: ignore[attr-defined]
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        _fail(
            cls,
            f"name {name!r} must be 1-100 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit; it names the run folder and the Hatchet task.",
        )
    run = cls.run  # type: ignore[attr-defined]
    if run is Experiment.run:
        _fail(cls, "override `def run(self, spec, ctx)`; it is the simulation itself.")
    params = [
        p
        for p in inspect.signature(run).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    required = [p for p in params if p.default is p.empty]
    if len(params) < 3 or len(required) > 3:
        _fail(
            cls,
            f"run{inspect.signature(run)} has the wrong signature; write "
            f"`def run(self, spec: {input_type.__name__}, ctx: LeafContext) -> "
            f"{output_type.__name__}`.",
        )
    _validate_settings(cls)
    cls.schema = ExperimentSchema.build(input_type, output_type)  # type: ignore[attr-defined]


def _validate_settings(cls: Any) -> None:
    labels = cls.worker_labels
    if isinstance(labels, str | WorkerLabel) or not isinstance(labels, Iterable):
        _fail(cls, f"worker_labels must be a set of WorkerLabel, got {labels!r}")
    try:
        cls.worker_labels = frozenset(WorkerLabel(label) for label in labels)
    except ValueError:
        _fail(
            cls,
            f"worker_labels {labels!r} has an unknown label; use "
            f"{', '.join('WorkerLabel.' + w.name for w in WorkerLabel)}.",
        )
    if isinstance(cls.retries, bool) or not isinstance(cls.retries, int) or cls.retries < 0:
        _fail(cls, f"retries must be an int >= 0, got {cls.retries!r}")
    if not isinstance(cls.timeouts, Timeouts):
        _fail(cls, f"timeouts must be Timeouts(execution=..., schedule=...), got {cls.timeouts!r}")
    if not isinstance(cls.recursion, RecursionPolicy):
        _fail(cls, f"recursion must be a RecursionPolicy, got {cls.recursion!r}")
    policy = cls.version_policy
    if policy not in VERSION_POLICIES:
        _fail(
            cls,
            f"version_policy {policy!r} is not one of {', '.join(VERSION_POLICIES)}; pin an "
            "exact version per call with allocate(specs, version='v1.2.3').",
        )
    if not isinstance(cls.min_batch_seconds, int | float) or cls.min_batch_seconds < 0:
        _fail(cls, f"min_batch_seconds must be a number >= 0, got {cls.min_batch_seconds!r}")


class Experiment(Generic[InputT, OutputT], metaclass=ExperimentMeta):
    """One simulation, run over many specs. Subclass it and override ``run``.

    Class attributes configure how it runs; each may be overridden in the subclass body.
    """

    name: ClassVar[str]
    """Registry key, run-folder name and Hatchet task name. Default: class name in snake_case."""

    worker_labels: ClassVar[frozenset[WorkerLabel]] = frozenset()
    """Leaves only run on workers that carry all of these labels (distributed engine)."""

    timeouts: ClassVar[Timeouts] = Timeouts()
    """Per-leaf schedule and execution timeouts; None parts fall back to SCYTHE_TIMEOUT_*."""

    retries: ClassVar[int] = 0
    """How many times a failed leaf is tried again before it becomes a failure row."""

    version_policy: ClassVar[str] = "bumpminor"
    """How ``allocate`` picks the next version: bumpmajor, bumpminor, bumppatch or keep."""

    recursion: ClassVar[RecursionPolicy] = RecursionPolicy()
    """Shape of the scatter/gather tree."""

    min_batch_seconds: ClassVar[float] = 0.5
    """Leaves are dispatched in batches expected to run at least this long, so that tiny
    simulations do not pay per-task overhead. 0 dispatches every leaf on its own."""

    store: ClassVar[ArtifactStore | None] = None
    """Where run folders live. None: S3Store if SCYTHE_STORAGE_BUCKET is set, else ./scythe-data."""

    engine: ClassVar[Engine | None] = None
    """Where work runs. None: the embedded LocalEngine."""

    schema: ClassVar[ExperimentSchema]
    abstract: ClassVar[bool] = True

    # ----------------------------------------------------------------- hooks (worker side)

    def setup(self) -> None:
        """Called once per worker process, before its first leaf. Load heavy, reusable state."""

    def teardown(self) -> None:
        """Called once per worker process at shutdown, even after failures."""

    @abc.abstractmethod
    def run(self, spec: InputT, ctx: LeafContext) -> OutputT:
        """Run one simulation. File references in ``spec`` are local Paths by now."""

    def fetch_inputs(self, spec: InputT, ctx: LeafContext) -> InputT:
        """Called before ``run``: turn remote file references into local cached Paths.

        Override to fetch lazily or to keep URIs (call ``super()`` for the default).
        """
        updates: dict[str, Any] = {}
        for plan in type(self).schema.file_inputs:
            value = getattr(spec, plan.name)
            if value is None:
                continue
            if plan.kind is FieldKind.FILE_LIST:
                updates[plan.name] = [ctx.fetch(file_uri(v)) for v in value]
            else:
                updates[plan.name] = ctx.fetch(file_uri(value))
        return spec.model_copy(update=updates) if updates else spec

    def publish_outputs(self, output: OutputT, ctx: LeafContext) -> OutputT:
        """Called after ``run``: upload local output files and reference them by URI.

        Files must live under ``ctx.workdir``; anything else is refused so that a leaf cannot
        publish files from elsewhere on the worker by mistake.
        """
        from scythe_oo.errors import OutputValidationError

        updates: dict[str, Any] = {}
        for plan in type(self).schema.file_outputs:
            value = getattr(output, plan.name)
            if not isinstance(value, Path):
                continue
            workdir = ctx.workdir.resolve()
            path = (value if value.is_absolute() else workdir / value).resolve()
            if workdir not in path.parents:
                raise OutputValidationError(
                    f"output field {plan.name!r}: {value} is outside the leaf's workdir "
                    f"{workdir}; write output files under ctx.workdir."
                )
            if not path.is_file():
                raise OutputValidationError(
                    f"output field {plan.name!r}: {path} does not exist; write the file before "
                    "returning its Path."
                )
            updates[plan.name] = ctx.upload(plan.name, path)
        return output.model_copy(update=updates) if updates else output

    # ----------------------------------------------------------------- driver side

    @classmethod
    def allocate(
        cls,
        specs: InputT | Sequence[InputT],
        *,
        version: str | SemVer | None = None,
        store: ArtifactStore | None = None,
        engine: Engine | None = None,
        recursion: RecursionPolicy | None = None,
    ) -> ExperimentRun:
        """Validate ``specs``, write a versioned run folder and start the run.

        A sequence runs through the scatter/gather tree; a single spec is a one-off run.
        Nothing is written unless every spec is valid, and the caller's objects are not
        modified. Returns at once; call ``.wait()`` on the result to block.
        """
        from scythe_oo.allocate import allocate_run

        return allocate_run(
            cls, specs, version=version, store=store, engine=engine, recursion=recursion
        )

    @classmethod
    def resume(cls, uri: str, *, engine: Engine | None = None) -> ExperimentRun:
        """Continue the interrupted run whose folder is ``uri``."""
        from scythe_oo.run import ExperimentRun

        return ExperimentRun.open(uri).resume(engine=engine)

    @classmethod
    def runs(cls, *, store: ArtifactStore | None = None) -> list[ExperimentRun]:
        """Every run of this experiment in the store, newest first."""
        from scythe_oo.run import list_runs
        from scythe_oo.strategies import resolve_store

        return list_runs(cls, resolve_store(cls, store))

    @classmethod
    def latest_run(cls, *, store: ArtifactStore | None = None) -> ExperimentRun:
        """The newest run of this experiment; LookupError when there is none."""
        found = cls.runs(store=store)
        if not found:
            raise LookupError(f"{cls.name} has no runs yet in this store")
        return found[0]
