"""The ArtifactStore protocol: where every byte of a run lives.

A store maps relative keys (``"exp/v1.0.0/2025-01-01_00-00-00/specs.pq"``) to bytes and to URIs.
It is deliberately tiny, like an httpx transport, so that a local directory and an S3 bucket are
interchangeable and easy to test. Every write is atomic: a reader sees the old object or the new
one, never half of one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class ArtifactStore(Protocol):
    """Where run folders, input artifacts and results are kept."""

    def uri(self, key: str) -> str:
        """The absolute URI (file:// or s3://) of ``key``."""
        ...

    def key_of(self, uri: str) -> str | None:
        """The key of ``uri`` if it lives in this store, else None."""
        ...

    def put_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` atomically at ``key``; return its URI."""
        ...

    def put_file(self, key: str, path: Path) -> str:
        """Copy a local file atomically to ``key``; return its URI."""
        ...

    def create_exclusive(self, key: str, data: bytes) -> bool:
        """Write ``key`` only if it does not exist yet. True when this call created it."""
        ...

    def get_bytes(self, key: str) -> bytes:
        """Read the whole object; ArtifactNotFoundError when absent."""
        ...

    def get_file(self, key: str, dest: Path) -> Path:
        """Copy the object to ``dest`` atomically; return ``dest``."""
        ...

    def exists(self, key: str) -> bool:
        """Whether an object is stored at ``key``."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Every key under ``prefix`` (recursive), in lexical order."""
        ...

    def list_dirs(self, prefix: str) -> list[str]:
        """The immediate child folder names under ``prefix`` (no trailing slash)."""
        ...

    def describe(self) -> dict[str, str]:
        """A secret-free description for manifests (kind, root or bucket and prefix)."""
        ...


@runtime_checkable
class SweepsStaged(Protocol):
    """A store that can remove what a writer killed mid-write left under a prefix: a local
    store's temporary siblings, an S3 bucket's incomplete multipart uploads (invisible, and
    billed until aborted). Optional: a run's finalize calls it on stores that have it."""

    def sweep_staged(self, prefix: str, older_than: float) -> int:
        """Remove what was staged under ``prefix`` more than ``older_than`` seconds ago and
        never completed (a writer still at work keeps its own); return how many."""
        ...


def join_key(*parts: str) -> str:
    """Join key parts with '/', ignoring empty parts and duplicate slashes."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))
