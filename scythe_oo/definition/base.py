"""ExperimentBase: the class every experiment derives from, and the metaclass that checks it.

Like a Scrapy Spider, an experiment is a subclass with a few typed class attributes and a
``run`` method; the metaclass registers it when the ``class`` statement runs, checks its generic
parameters and settings, and reports mistakes right there, naming the class.

The public ``scythe_oo.Experiment`` adds the driver methods (``allocate``, ``resume``, ...) on
top of this base. Everything below the top layer types against this base, so the code that runs
an experiment never imports the code that launches one.
"""

from __future__ import annotations

import abc
import typing
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

from scythe_oo.definition.checks import check_experiment_class, check_generic, fail
from scythe_oo.definition.context import LeafContext
from scythe_oo.definition.errors import ExperimentDefinitionError, OutputValidationError
from scythe_oo.definition.labels import WorkerLabel
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.definition.registry import ExperimentRegistry
from scythe_oo.definition.schema import ExperimentSchema, FieldKind, file_uri
from scythe_oo.definition.spec import ExperimentInputSpec, ExperimentOutputSpec
from scythe_oo.definition.timeouts import Timeouts

InputT = TypeVar("InputT", bound=ExperimentInputSpec)
OutputT = TypeVar("OutputT", bound=ExperimentOutputSpec)


class ExperimentMeta(abc.ABCMeta):
    """Registers every concrete Experiment subclass and validates it at class creation.

    It only registers; the registry is its own object. Classes whose generic parameters are still
    TypeVars, or that set ``abstract = True`` in their body, are bases and are not registered.
    """

    def __new__(
        mcs, cls_name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any
    ) -> ExperimentMeta:
        cls = super().__new__(mcs, cls_name, bases, namespace, **kwargs)
        if namespace.get("__module__") == __name__ and cls_name == "ExperimentBase":
            return cls
        generic = _resolve_generic_parameters(cls)
        cls.__scythe_generic__ = generic  # type: ignore[attr-defined]
        if namespace.get("abstract", False):
            return cls
        check_generic(cls, generic)
        if any(isinstance(t, TypeVar) for t in generic):
            return cls  # a generic intermediate base: its subclasses name the types
        for role, tp in zip(("input", "output"), generic, strict=True):
            if not isinstance(tp, type):
                fail(
                    cls,
                    f"the {role} type {tp!r} is not a class; write Experiment[MyInput, MyOutput] "
                    "with your ExperimentInputSpec and ExperimentOutputSpec subclasses.",
                )
        cls.abstract = False  # type: ignore[attr-defined]
        check_experiment_class(cls, namespace, generic, ExperimentBase)
        cls.schema = ExperimentSchema.build(*generic)  # type: ignore[attr-defined]
        REGISTRY.register(cls)  # type: ignore[arg-type]
        return cls


def _resolve_generic_parameters(cls: type) -> tuple[Any, Any]:
    """InputT and OutputT of ``cls``, following generic intermediate bases."""
    for base in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(base)
        if origin is None or not (isinstance(origin, type) and issubclass(origin, ExperimentBase)):
            continue
        args = typing.get_args(base)
        if origin is ExperimentBase:
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


class ExperimentBase(Generic[InputT, OutputT], metaclass=ExperimentMeta):
    """One simulation, run over many specs: the settings and hooks, without the driver.

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

    schema: ClassVar[ExperimentSchema]
    abstract: ClassVar[bool] = True

    # ----------------------------------------------------------------- hooks (worker side)

    def setup(self) -> None:
        """Called once per worker process, before its first leaf. Load heavy, reusable state."""

    def teardown(self) -> None:
        """Called once per worker process at shutdown, even after failures."""

    @abc.abstractmethod
    def run(self, spec: InputT, ctx: LeafContext) -> OutputT:
        """Called once per spec: the simulation. File references in ``spec`` are local Paths."""

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


AnyExperiment = type[ExperimentBase[Any, Any]]
"""What the layers below the top pass around: an experiment class, typed against the base."""

REGISTRY: ExperimentRegistry[AnyExperiment] = ExperimentRegistry()
"""The process-wide registry every Experiment subclass joins at class creation."""
