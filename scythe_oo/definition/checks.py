"""What a ``class MyExperiment(Experiment[...])`` statement is checked for.

Every mistake that can be seen in the class body is reported when the class is created, naming
the class, the attribute, the value and the fix: a wrong setting found after a million leaves
costs a million leaves.
"""

from __future__ import annotations

import difflib
import inspect
import re
import typing
from collections.abc import Iterable
from typing import Any

from scythe_oo.definition.errors import ExperimentDefinitionError
from scythe_oo.definition.labels import WorkerLabel
from scythe_oo.definition.recursion import RecursionPolicy
from scythe_oo.definition.spec import ExperimentInputSpec, ExperimentOutputSpec
from scythe_oo.definition.timeouts import Timeouts

VERSION_POLICIES = ("bumpmajor", "bumpminor", "bumppatch", "keep")
"""How ``allocate`` picks the next version of an experiment's run folders."""

SETTINGS = (
    "name",
    "worker_labels",
    "timeouts",
    "retries",
    "version_policy",
    "recursion",
    "min_batch_seconds",
    "store",
    "engine",
    "collector",
    "abstract",
)
"""Every class attribute that configures an experiment."""

KNOWN_MISSPELLINGS = {
    "desired_worker_labels": "worker_labels",  # the seed tool's name
    "labels": "worker_labels",
    "timeout": "timeouts",
    "execution_timeout": "timeouts",
    "schedule_timeout": "timeouts",
    "retry": "retries",
    "max_retries": "retries",
    "recursion_map": "recursion",
    "recursion_policy": "recursion",
    "version": "version_policy",
    "result_collector": "collector",
}
"""Names that look like a setting but are not one, and the setting meant."""

HOOKS = {"run": 2, "fetch_inputs": 2, "publish_outputs": 2, "setup": 0, "teardown": 0}
"""Each hook the framework calls, and how many arguments it passes besides ``self``."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def snake_case(name: str) -> str:
    """``SimulateEnergy`` -> ``simulate_energy``; ``HTTPFetch`` -> ``http_fetch``."""
    step = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", step).lower()


def fail(cls: type, message: str) -> typing.NoReturn:
    raise ExperimentDefinitionError(f"{cls.__module__}.{cls.__qualname__}: {message}")


def check_experiment_class(
    cls: Any, namespace: dict[str, Any], generic: tuple[Any, Any], base: type
) -> None:
    """Check a concrete experiment class; ``base`` is the class whose ``run`` is abstract."""
    input_type, output_type = generic
    if not issubclass(input_type, ExperimentInputSpec):
        fail(
            cls,
            f"the input type {input_type.__name__} must subclass ExperimentInputSpec "
            "(write Experiment[MyInput, MyOutput]).",
        )
    if not issubclass(output_type, ExperimentOutputSpec):
        fail(
            cls,
            f"the output type {output_type.__name__} must subclass ExperimentOutputSpec "
            "(write Experiment[MyInput, MyOutput]).",
        )
    if "name" not in namespace:
        cls.name = snake_case(cls.__name__)
    name = cls.name
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        fail(
            cls,
            f"name {name!r} must be 1-100 letters, digits, '_', '-' or '.', starting with a "
            "letter or digit; it names the run folder and the Hatchet task.",
        )
    if cls.run is base.run:  # type: ignore[attr-defined]
        fail(cls, "override `def run(self, spec, ctx)`; it is the simulation itself.")
    for hook, given in HOOKS.items():
        _check_hook(cls, hook, given, input_type.__name__, output_type.__name__)
    _check_spelling(cls, namespace)
    check_settings(cls)


def check_generic(cls: Any, generic: tuple[Any, Any]) -> None:
    """A concrete class must name its spec types: ``class X(Experiment)`` would be taken for
    an abstract base and never registered, and allocate would fail much later."""
    if any(isinstance(t, typing.TypeVar) for t in generic) and not cls.__parameters__:
        fail(
            cls,
            "Experiment needs its input and output types: write "
            f"`class {cls.__name__}(Experiment[MyInput, MyOutput])`, or set `abstract = True` "
            "in the class body for a base class of other experiments.",
        )


_SIGNATURES = {
    "run": "def run(self, spec: {input}, ctx: LeafContext) -> {output}",
    "fetch_inputs": "def fetch_inputs(self, spec: {input}, ctx: LeafContext) -> {input}",
    "publish_outputs": "def publish_outputs(self, output: {output}, ctx: LeafContext) -> {output}",
    "setup": "def setup(self) -> None",
    "teardown": "def teardown(self) -> None",
}


def _check_hook(cls: Any, hook: str, given: int, input_name: str, output_name: str) -> None:
    """The framework calls ``hook`` with ``self`` and ``given`` positional arguments."""
    method = getattr(cls, hook)
    signature = inspect.signature(method)
    params = list(signature.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    required_keywords = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    fits = len(required) <= given + 1 <= len(positional) and not required_keywords
    if not fits:
        expected = _SIGNATURES[hook].format(input=input_name, output=output_name)
        fail(cls, f"{hook}{signature} has the wrong signature; write `{expected}`.")


def _check_spelling(cls: Any, namespace: dict[str, Any]) -> None:
    """A misspelled setting would be silently ignored; close matches are refused."""
    for attribute, value in namespace.items():
        if attribute.startswith("_") or attribute in SETTINGS or callable(value):
            continue
        if isinstance(value, property | classmethod | staticmethod):
            continue
        meant = KNOWN_MISSPELLINGS.get(attribute.lower()) or next(
            iter(difflib.get_close_matches(attribute.lower(), SETTINGS, n=1, cutoff=0.85)), None
        )
        if meant is not None:
            fail(
                cls,
                f"`{attribute}` is not a setting; did you mean `{meant}`? (A misspelled "
                "setting would be ignored. Rename your own attribute if it is not a setting.)",
            )


def check_settings(cls: Any) -> None:
    """The class attributes that configure a run, normalised where a set is expected."""
    labels = cls.worker_labels
    if isinstance(labels, str | WorkerLabel) or not isinstance(labels, Iterable):
        fail(cls, f"worker_labels must be a set of WorkerLabel, got {labels!r}")
    try:
        cls.worker_labels = frozenset(WorkerLabel(label) for label in labels)
    except ValueError:
        fail(
            cls,
            f"worker_labels {labels!r} has an unknown label; use "
            f"{', '.join('WorkerLabel.' + w.name for w in WorkerLabel)}.",
        )
    if isinstance(cls.retries, bool) or not isinstance(cls.retries, int) or cls.retries < 0:
        fail(cls, f"retries must be an int >= 0, got {cls.retries!r}")
    if not isinstance(cls.timeouts, Timeouts):
        fail(cls, f"timeouts must be Timeouts(execution=..., schedule=...), got {cls.timeouts!r}")
    if not isinstance(cls.recursion, RecursionPolicy):
        fail(cls, f"recursion must be a RecursionPolicy, got {cls.recursion!r}")
    policy = cls.version_policy
    if policy not in VERSION_POLICIES:
        fail(
            cls,
            f"version_policy {policy!r} is not one of {', '.join(VERSION_POLICIES)}; pin an "
            "exact version per call with allocate(specs, version='v1.2.3').",
        )
    if not isinstance(cls.min_batch_seconds, int | float) or cls.min_batch_seconds < 0:
        fail(cls, f"min_batch_seconds must be a number >= 0, got {cls.min_batch_seconds!r}")
