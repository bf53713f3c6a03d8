"""Artifact stores: where run folders, input files and results live."""

from scythe_oo.store.base import ArtifactStore, join_key
from scythe_oo.store.cache import FileCache
from scythe_oo.store.local import LocalStore
from scythe_oo.store.s3 import S3Store

__all__ = ["ArtifactStore", "FileCache", "LocalStore", "S3Store", "join_key"]
