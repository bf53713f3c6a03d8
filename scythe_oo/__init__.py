"""scythe_oo: subclass an Experiment, run it 10^3 to 10^7 times, get Parquet tables back.

Importing this package is cheap and has no side effects: nothing connects anywhere until a run
is allocated or a worker is started.
"""

from scythe_oo.collector import ResultCollector
from scythe_oo.engine.base import Engine
from scythe_oo.engine.local import LocalEngine
from scythe_oo.errors import (
    ExperimentDefinitionError,
    OutputValidationError,
    RunFailedError,
    ScytheError,
    SpecValidationError,
    UnknownExperimentError,
)
from scythe_oo.experiment import Experiment, LeafContext
from scythe_oo.include import IncludedWorkflow, include
from scythe_oo.labels import WorkerLabel
from scythe_oo.layout import SemVer
from scythe_oo.recursion import RecursionPolicy
from scythe_oo.registry import REGISTRY
from scythe_oo.run import ExperimentRun
from scythe_oo.spec import (
    ExperimentInputSpec,
    ExperimentOutputSpec,
    FileReference,
    NotIndexed,
    OptionalFileReference,
)
from scythe_oo.store.base import ArtifactStore
from scythe_oo.store.local import LocalStore
from scythe_oo.timeouts import Timeouts

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """Heavy or optional backends load on first use, keeping ``import scythe_oo`` fast."""
    if name == "S3Store":
        from scythe_oo.store.s3 import S3Store

        return S3Store
    if name == "HatchetEngine":
        from scythe_oo.engine.hatchet import HatchetEngine

        return HatchetEngine
    if name == "WorkerConfig":
        from scythe_oo.worker import WorkerConfig

        return WorkerConfig
    raise AttributeError(f"module 'scythe_oo' has no attribute {name!r}")


__all__ = [
    "REGISTRY",
    "ArtifactStore",
    "Engine",
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
    "include",
]
