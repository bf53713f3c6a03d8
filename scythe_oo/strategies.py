"""The one place that decides which store, engine and recursion policy a run uses.

Precedence, highest first: the argument to ``allocate``; the experiment's class attribute; the
SCYTHE_* settings; the embedded default (LocalStore at ./scythe-data, LocalEngine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from scythe_oo.recursion import RecursionPolicy
from scythe_oo.settings import Settings

if TYPE_CHECKING:
    from scythe_oo.engine.base import Engine
    from scythe_oo.experiment import Experiment
    from scythe_oo.store.base import ArtifactStore


def resolve_store(cls: type[Experiment[Any, Any]], store: ArtifactStore | None) -> ArtifactStore:
    if store is not None:
        return store
    if cls.store is not None:
        return cls.store
    return default_store()


def default_store() -> ArtifactStore:
    """The store the settings ask for: S3 when SCYTHE_STORAGE_BUCKET is set, else local."""
    settings = Settings.from_env()
    if settings.storage_bucket:
        from scythe_oo.store.s3 import S3Store

        return S3Store(bucket=settings.storage_bucket, prefix=settings.storage_bucket_prefix)
    from scythe_oo.store.local import LocalStore

    return LocalStore(root=settings.local_root)


def resolve_engine(cls: type[Experiment[Any, Any]], engine: Engine | None) -> Engine:
    if engine is not None:
        return engine
    if cls.engine is not None:
        return cls.engine
    from scythe_oo.engine.local import LocalEngine

    return LocalEngine()


def resolve_recursion(
    cls: type[Experiment[Any, Any]], recursion: RecursionPolicy | None
) -> RecursionPolicy:
    if recursion is None:
        return cls.recursion
    if not isinstance(recursion, RecursionPolicy):
        raise TypeError(f"recursion must be a RecursionPolicy, got {recursion!r}")
    return recursion
