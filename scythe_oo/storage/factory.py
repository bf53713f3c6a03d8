"""The one place that builds a store: from the settings, a manifest's description or a URI.

Stores are found through a name table, as Metaflow finds its plugins: the S3 backend pulls in
boto3, which a LocalStore-only user should never pay for, so a kind names the class by its
import path and the class is imported the first time that kind is built.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from scythe_oo.definition.settings import Settings
from scythe_oo.storage.base import ArtifactStore

STORES: dict[str, str] = {
    "local": "scythe_oo.storage.local:LocalStore",
    "s3": "scythe_oo.storage.s3:S3Store",
}
"""Store kinds (as manifests and the ``--store`` option name them) and their classes."""


def store_class(kind: str) -> Any:
    """The class of a store kind, imported on first use."""
    try:
        path = STORES[kind]
    except KeyError:
        known = ", ".join(sorted(STORES))
        raise ValueError(f"unknown store kind {kind!r}; known kinds: {known}") from None
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def store_from_description(description: dict[str, str]) -> ArtifactStore:
    """Rebuild a store from its manifest description, as a worker receives it.

    Credentials are never part of a description: workers use their own environment.
    """
    kind = description.get("kind", "")
    if kind == "local":
        return store_class("local")(root=description["root"])  # type: ignore[no-any-return]
    if kind == "s3":
        store: ArtifactStore = store_class("s3")(
            bucket=description["bucket"], prefix=description.get("prefix", "")
        )
        return store
    raise ValueError(f"unknown store kind {kind!r} in {description!r}")


def default_store(settings: Settings | None = None) -> ArtifactStore:
    """The store the settings ask for: S3 when SCYTHE_STORAGE_BUCKET is set, else local."""
    settings = settings or Settings.from_env()
    if settings.storage_bucket:
        return store_from_description(
            {
                "kind": "s3",
                "bucket": settings.storage_bucket,
                "prefix": settings.storage_bucket_prefix,
            }
        )
    return store_from_description({"kind": "local", "root": str(settings.local_root)})


def store_from_uri(text: str) -> ArtifactStore:
    """The store a ``--store`` option names: ``s3://bucket/prefix``, ``file:///root`` or a
    local folder."""
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise ValueError(f"{text!r} names no bucket; write s3://bucket/prefix")
        prefix = parsed.path.strip("/")
        return store_from_description({"kind": "s3", "bucket": parsed.netloc, "prefix": prefix})
    if parsed.scheme == "file":
        return store_from_description({"kind": "local", "root": unquote(parsed.path)})
    if parsed.scheme and len(parsed.scheme) > 1:  # a Windows drive letter is not a scheme
        raise ValueError(f"{text!r}: a store is an s3:// or file:// URI, or a local folder")
    return store_from_description({"kind": "local", "root": str(Path(text).expanduser())})


def store_for_run_uri(uri: str) -> ArtifactStore:
    """The store a run folder URI lives in: its root is three levels above the folder
    (``<root>/<experiment>/<version>/<timestamp>``)."""
    parsed = urlparse(uri.rstrip("/"))
    if parsed.scheme == "file":
        root = Path(unquote(parsed.path)).parents[2]
        return store_from_description({"kind": "local", "root": str(root)})
    if parsed.scheme == "s3":
        parts = parsed.path.strip("/").split("/")
        return store_from_description(
            {"kind": "s3", "bucket": parsed.netloc, "prefix": "/".join(parts[:-3])}
        )
    raise ValueError(f"{uri} is neither a file:// nor an s3:// URI")
