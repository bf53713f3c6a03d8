"""Local input files: snapshotted and hashed before anything is written, uploaded once each.

A spec may name a file on the caller's machine (a Path or a ``file://`` URI); workers cannot
read it there. Each distinct file of each field is copied into a private staging folder as it
is checked, hashing the bytes as they are copied: what is uploaded later is that snapshot, so
a file that changes or disappears afterwards cannot make the record lie, and a file that is
missing is found before the run folder exists. After the folder is claimed, each snapshot is
uploaded once into ``artifacts/<field>/`` and the specs are re-pointed at the uploaded copies;
input_artifacts.yml records every upload with the sha256 of what was uploaded.
"""

from __future__ import annotations

import hashlib
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.redact import has_password
from scythe_oo.definition.schema import FieldKind
from scythe_oo.driver.validate import Problems
from scythe_oo.runfolder.layout import RunLayout, safe_name
from scythe_oo.runfolder.specs import upload_token
from scythe_oo.storage import atomic
from scythe_oo.storage.base import ArtifactStore

UPLOAD_THREADS = 8


@attrs.frozen
class LocalFile:
    """One snapshotted input file of one field."""

    field: str
    path: Path
    digest: str
    snapshot: Path
    token: str


def local_path(value: Any) -> Path | None:
    """The local file a file reference names (a Path, or a file:// URI of this host)."""
    if isinstance(value, Path):
        return value.expanduser().resolve()
    text = str(value)
    if text.lower().startswith("file://"):
        parts = urlsplit(text)
        if parts.netloc in ("", "localhost"):
            return Path(urllib.request.url2pathname(parts.path)).resolve()
    return None


class LocalFiles:
    """Every local input file of the specs: checked, snapshotted and hashed once per path."""

    def __init__(self, cls: AnyExperiment, staging: Path) -> None:
        self.cls = cls
        self.staging = staging
        self.files: dict[tuple[str, Path], LocalFile] = {}
        self._by_name: dict[tuple[str, str], LocalFile] = {}
        self._missing: set[tuple[str, Path]] = set()

    def tokenized(self, specs: list[Any], first: int, problems: Problems) -> list[int]:
        """Point each spec's local files at upload tokens (in place: the specs are the
        validated copies, never the caller's); how many tokens each spec now holds."""
        counts = []
        for position, spec in enumerate(specs, start=first):
            count = 0
            for plan in self.cls.schema.file_inputs:
                value = getattr(spec, plan.name)
                if value is None:
                    continue
                if plan.kind is FieldKind.FILE_LIST:
                    tokens = [self._token(position, plan.name, v, problems) for v in value]
                    count += sum(t != v for t, v in zip(tokens, value, strict=True))
                    object.__setattr__(spec, plan.name, tokens)
                else:
                    token = self._token(position, plan.name, value, problems)
                    count += token is not value
                    object.__setattr__(spec, plan.name, token)
            counts.append(count)
        return counts

    def _token(self, position: int, field: str, value: Any, problems: Problems) -> Any:
        path = local_path(value)
        if path is None:  # a remote reference: fetched by the workers themselves
            if has_password(str(value)):
                problems.add(
                    f"spec #{position}: field {field!r}: the URL carries a password, which "
                    "would be stored in the run folder with the spec; give workers the "
                    "credentials through their environment, or use a presigned URL."
                )
            return value
        known = self.files.get((field, path))
        if known is not None:
            return known.token
        if (field, path) in self._missing:
            return value
        if not path.is_file():
            self._missing.add((field, path))
            problems.add(
                f"spec #{position}: field {field!r}: local file {value} does not exist "
                f"(resolved to {path}); fix the path or pass an s3:// or https:// URI."
            )
            return value
        number = len(self.files)
        snapshot = self.staging / f"{number:08x}"
        try:
            digest = _copy_hashing(path, snapshot)
        except OSError as exc:
            self._missing.add((field, path))
            problems.add(f"spec #{position}: field {field!r}: cannot read {path} ({exc}).")
            return value
        local = LocalFile(field, path, digest, snapshot, upload_token(number))
        stored = safe_name(path.name)
        other = self._by_name.get((field, stored))
        if other is not None and other.digest != digest:
            problems.add(
                f"spec #{position}: field {field!r}: {path} and {other.path} are different "
                f"files stored under the same name {stored!r}; they would overwrite each "
                "other in the run folder. Rename one of them."
            )
        self._by_name.setdefault((field, stored), local)
        self.files[(field, path)] = local
        return local.token

    def upload(self, store: ArtifactStore, layout: RunLayout) -> dict[str, str]:
        """Upload each snapshot once, concurrently; the URI of each upload token."""
        uploaded: dict[str, str] = {}
        with ThreadPoolExecutor(max_workers=UPLOAD_THREADS) as pool:
            futures: dict[str, Future[str]] = {}
            for local in self.files.values():
                key = layout.artifact(local.field, local.path.name)
                if key not in futures:  # identical content under the same name: store once
                    futures[key] = pool.submit(store.put_file, key, local.snapshot)
                uploaded[local.token] = store.uri(key)
            for future in futures.values():
                future.result()  # surface any upload error
        return uploaded

    def artifacts_yaml(self, uploaded: dict[str, str]) -> bytes:
        """input_artifacts.yml: every uploaded file of every field, with its sha256."""
        listing: dict[str, dict[str, str]] = {}
        for local in self.files.values():
            listing.setdefault(local.field, {})[uploaded[local.token]] = local.digest
        files = {
            field: [{"uri": uri, "sha256": digest} for uri, digest in sorted(entries.items())]
            for field, entries in sorted(listing.items())
        }
        return yaml.safe_dump({"files": files}, sort_keys=False).encode()


def _copy_hashing(source: Path, dest: Path) -> str:
    """Copy ``source`` to ``dest``; the sha256 of exactly the bytes copied."""
    digest = hashlib.sha256()

    def copy(out: Any) -> None:
        with source.open("rb") as fh:
            while block := fh.read(1 << 20):
                digest.update(block)
                out.write(block)

    atomic.write_stream(dest, copy)
    return digest.hexdigest()
