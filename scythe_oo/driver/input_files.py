"""Local input files: checked and hashed before anything is written, uploaded once each.

A spec may name a file on the caller's machine; workers cannot read it there. Each distinct
file of each field is checked to exist, hashed, and uploaded once into the run folder's
``artifacts/<field>/``, and the specs are re-pointed at the uploaded copies.
input_artifacts.yml records every upload with its sha256.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import yaml
from pydantic import TypeAdapter

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.schema import FieldKind
from scythe_oo.definition.spec import FileReference
from scythe_oo.runfolder.layout import RunLayout, safe_name
from scythe_oo.storage.base import ArtifactStore

MAX_LISTED_PROBLEMS = 20


@attrs.frozen
class LocalFile:
    """A local input file, identified by its content so a changed file is never mistaken."""

    path: Path
    digest: str


class LocalFiles:
    """Every local input file of the specs, checked to exist and hashed, once per path."""

    def __init__(self, cls: AnyExperiment) -> None:
        self.cls = cls
        self.files: dict[str, dict[Path, LocalFile]] = {}
        self.problems: list[str] = []
        self._by_name: dict[tuple[str, str], LocalFile] = {}
        self._seen: set[tuple[str, Path]] = set()

    def add(self, position: int, spec: Any) -> None:
        for plan in self.cls.schema.file_inputs:
            value = getattr(spec, plan.name)
            values = value if plan.kind is FieldKind.FILE_LIST else [value]
            for raw in values or ():
                if isinstance(raw, Path) and (plan.name, raw) not in self._seen:
                    self._seen.add((plan.name, raw))
                    self._check(position, plan.name, raw)

    def _check(self, position: int, field: str, raw: Path) -> None:
        path = raw.expanduser().resolve()
        known = self.files.setdefault(field, {})
        if path in known:
            return
        if not path.is_file():
            self.problems.append(
                f"spec #{position}: field {field!r}: local file {raw} does not exist "
                f"(resolved to {path}); fix the path or pass an s3:// or https:// URI."
            )
            return
        local = LocalFile(path, _sha256(path))
        stored_name = safe_name(path.name)
        other = self._by_name.get((field, stored_name))
        if other is not None and other.digest != local.digest:
            self.problems.append(
                f"spec #{position}: field {field!r}: {path} and {other.path} are different "
                f"files stored under the same name {stored_name!r}; they would overwrite "
                "each other in the run folder. Rename one of them."
            )
            return
        self._by_name[(field, stored_name)] = local
        known[path] = local

    def raise_problems(self) -> None:
        if self.problems:
            raise SpecValidationError(
                f"{self.cls.name}.allocate: {len(self.problems)} problem(s) with local input "
                "files; nothing was written:\n  " + "\n  ".join(self.problems[:MAX_LISTED_PROBLEMS])
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Uploaded = dict[tuple[str, Path], str]
"""(field, resolved local path) -> store URI of the uploaded copy."""


def upload_inputs(
    store: ArtifactStore, layout: RunLayout, files: dict[str, dict[Path, LocalFile]]
) -> Uploaded:
    """Upload each distinct file of each field once, concurrently."""
    uploaded: Uploaded = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures: dict[str, Future[str]] = {}
        for field, known in files.items():
            for path in known:
                key = layout.artifact(field, path.name)
                if key not in futures:  # identical content under the same name: store once
                    futures[key] = pool.submit(store.put_file, key, path)
                uploaded[(field, path)] = store.uri(key)
        for future in futures.values():
            future.result()  # surface any upload error
    return uploaded


def input_artifacts_yaml(uploaded: Uploaded, files: dict[str, dict[Path, LocalFile]]) -> bytes:
    listing: dict[str, list[dict[str, str]]] = {}
    for field, known in sorted(files.items()):
        entries = {uploaded[(field, p)]: f.digest for p, f in known.items()}
        listing[field] = [{"uri": uri, "sha256": digest} for uri, digest in sorted(entries.items())]
    return yaml.safe_dump({"files": listing}, sort_keys=False).encode()


_FILE_REFERENCE = TypeAdapter(FileReference)


def _rereference(field: str, value: Any, uploaded: Uploaded) -> Any:
    if isinstance(value, Path):
        return _FILE_REFERENCE.validate_python(uploaded[(field, value.expanduser().resolve())])
    return value


def repointed(cls: AnyExperiment, spec: Any, uploaded: Uploaded) -> Any:
    updates: dict[str, Any] = {}
    for plan in cls.schema.file_inputs:
        value = getattr(spec, plan.name)
        if plan.kind is FieldKind.FILE_LIST and value:
            updates[plan.name] = [_rereference(plan.name, v, uploaded) for v in value]
        elif value is not None:
            updates[plan.name] = _rereference(plan.name, value, uploaded)
    return spec.model_copy(update=updates) if updates else spec
