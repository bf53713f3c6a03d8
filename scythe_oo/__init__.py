"""scythe_oo: subclass an Experiment, run it 10^3 to 10^7 times, get Parquet tables back.

Importing this package is cheap and has no side effects: every public name is loaded on first
use (``from scythe_oo import Experiment`` loads the framework; ``import scythe_oo`` alone loads
none of pandas, pyarrow, boto3 or hatchet_sdk), and nothing connects anywhere until a run is
allocated or a worker is started.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from scythe_oo.definition.base import REGISTRY
    from scythe_oo.definition.context import LeafContext
    from scythe_oo.definition.design import Design
    from scythe_oo.definition.errors import (
        DesignError,
        ExperimentDefinitionError,
        OutputValidationError,
        RunFailedError,
        ScytheError,
        SpecValidationError,
        UnknownExperimentError,
    )
    from scythe_oo.definition.labels import WorkerLabel
    from scythe_oo.definition.recursion import RecursionPolicy
    from scythe_oo.definition.spec import (
        ExperimentInputSpec,
        ExperimentOutputSpec,
        FileReference,
        NotIndexed,
        OptionalFileReference,
    )
    from scythe_oo.definition.timeouts import Timeouts
    from scythe_oo.definition.version import __version__
    from scythe_oo.driver.estimate import Estimate
    from scythe_oo.driver.run import ExperimentRun
    from scythe_oo.engine.protocol import Engine
    from scythe_oo.engines.hatchet.engine import HatchetEngine
    from scythe_oo.engines.hatchet.include import IncludedWorkflow, include
    from scythe_oo.engines.hatchet.worker import WorkerConfig
    from scythe_oo.engines.local import LocalEngine
    from scythe_oo.experiment import Experiment
    from scythe_oo.runfolder.versions import SemVer
    from scythe_oo.storage.base import ArtifactStore
    from scythe_oo.storage.local import LocalStore
    from scythe_oo.storage.s3 import S3Store
    from scythe_oo.tree.collector import ResultCollector

_PUBLIC: dict[str, str] = {
    "REGISTRY": "scythe_oo.definition.base",
    "ArtifactStore": "scythe_oo.storage.base",
    "Design": "scythe_oo.definition.design",
    "DesignError": "scythe_oo.definition.errors",
    "Engine": "scythe_oo.engine.protocol",
    "Estimate": "scythe_oo.driver.estimate",
    "Experiment": "scythe_oo.experiment",
    "ExperimentDefinitionError": "scythe_oo.definition.errors",
    "ExperimentInputSpec": "scythe_oo.definition.spec",
    "ExperimentOutputSpec": "scythe_oo.definition.spec",
    "ExperimentRun": "scythe_oo.driver.run",
    "FileReference": "scythe_oo.definition.spec",
    "HatchetEngine": "scythe_oo.engines.hatchet.engine",
    "IncludedWorkflow": "scythe_oo.engines.hatchet.include",
    "LeafContext": "scythe_oo.definition.context",
    "LocalEngine": "scythe_oo.engines.local",
    "LocalStore": "scythe_oo.storage.local",
    "NotIndexed": "scythe_oo.definition.spec",
    "OptionalFileReference": "scythe_oo.definition.spec",
    "OutputValidationError": "scythe_oo.definition.errors",
    "RecursionPolicy": "scythe_oo.definition.recursion",
    "ResultCollector": "scythe_oo.tree.collector",
    "RunFailedError": "scythe_oo.definition.errors",
    "S3Store": "scythe_oo.storage.s3",
    "ScytheError": "scythe_oo.definition.errors",
    "SemVer": "scythe_oo.runfolder.versions",
    "SpecValidationError": "scythe_oo.definition.errors",
    "Timeouts": "scythe_oo.definition.timeouts",
    "UnknownExperimentError": "scythe_oo.definition.errors",
    "WorkerConfig": "scythe_oo.engines.hatchet.worker",
    "WorkerLabel": "scythe_oo.definition.labels",
    "__version__": "scythe_oo.definition.version",
    "include": "scythe_oo.engines.hatchet.include",
}
"""Every public name and the module that defines it."""

__all__ = [
    "REGISTRY",
    "ArtifactStore",
    "Design",
    "DesignError",
    "Engine",
    "Estimate",
    "Experiment",
    "ExperimentDefinitionError",
    "ExperimentInputSpec",
    "ExperimentOutputSpec",
    "ExperimentRun",
    "FileReference",
    "HatchetEngine",
    "IncludedWorkflow",
    "LeafContext",
    "LocalEngine",
    "LocalStore",
    "NotIndexed",
    "OptionalFileReference",
    "OutputValidationError",
    "RecursionPolicy",
    "ResultCollector",
    "RunFailedError",
    "S3Store",
    "ScytheError",
    "SemVer",
    "SpecValidationError",
    "Timeouts",
    "UnknownExperimentError",
    "WorkerConfig",
    "WorkerLabel",
    "__version__",
    "include",
]


def __getattr__(name: str) -> Any:
    """Load a public name on first use, and keep it for the next lookup."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'scythe_oo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
