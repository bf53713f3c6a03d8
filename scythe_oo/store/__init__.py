"""Artifact stores: where run folders, input files and results live."""

from scythe_oo.store.base import ArtifactStore, join_key
from scythe_oo.store.cache import FileCache
from scythe_oo.store.local import LocalStore
from scythe_oo.store.s3 import S3Store

__all__ = [
    "ArtifactStore",
    "FileCache",
    "LocalStore",
    "S3Store",
    "join_key",
    "store_from_description",
]


def store_from_description(description: dict[str, str]) -> ArtifactStore:
    """Rebuild a store from its manifest description, as a worker receives it.

    Credentials are never part of a description: workers use their own environment.
    """
    kind = description.get("kind")
    if kind == "local":
        return LocalStore(root=description["root"])
    if kind == "s3":
        return S3Store(bucket=description["bucket"], prefix=description.get("prefix", ""))
    raise ValueError(f"unknown store kind {kind!r} in {description!r}")
