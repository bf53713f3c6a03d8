"""LocalStore: a directory on this machine, the embedded default (./scythe-data)."""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import attrs

from scythe_oo.definition.errors import ArtifactNotFoundError, StoreError
from scythe_oo.storage import atomic


def _absolute(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


@attrs.frozen
class LocalStore:
    """Keeps run folders under ``root``; URIs are file:// URIs of absolute paths."""

    root: Path = attrs.field(converter=_absolute)

    def path_of(self, key: str) -> Path:
        """The file that holds ``key``; raises StoreError for a key outside the root."""
        # Lexical normalisation, not resolve(): keys never contain symlinks we must follow,
        # and resolve() costs a system call per path component on every store operation.
        # A string prefix test: Path.parents builds one Path per level on every call.
        joined = os.path.normpath(os.path.join(self.root, key))
        root = str(self.root)
        if joined != root and not joined.startswith(root.rstrip(os.sep) + os.sep):
            raise StoreError(f"key {key!r} escapes the store root {self.root}")
        return Path(joined)

    def uri(self, key: str) -> str:
        return self.path_of(key).as_uri()

    def key_of(self, uri: str) -> str | None:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            return None
        path = Path(unquote(parsed.path))
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return None

    def put_bytes(self, key: str, data: bytes) -> str:
        path = self.path_of(key)
        atomic.write_bytes(path, data)
        return path.as_uri()

    def put_file(self, key: str, path: Path) -> str:
        dest = self.path_of(key)
        atomic.copy_file(path, dest)
        return dest.as_uri()

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self.path_of(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written beside its name, then hard-linked into place: the link fails if the name
        # exists, and a reader never sees the file before its last byte is written.
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=atomic.TMP_SUFFIX
        )
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.link(tmp, path)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        return True

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path_of(key).read_bytes()
        except FileNotFoundError as exc:
            raise ArtifactNotFoundError(f"no object at {self.uri(key)}") from exc

    def get_file(self, key: str, dest: Path) -> Path:
        src = self.path_of(key)
        if not src.is_file():
            raise ArtifactNotFoundError(f"no object at {src.as_uri()}")
        atomic.copy_file(src, dest)
        return dest

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def list_keys(self, prefix: str) -> Iterator[str]:
        base = self.path_of(prefix) if prefix else self.root
        if not base.is_dir():
            return
        # Sorted by the whole key string, as S3 lists, so both stores agree on order.
        keys = sorted(
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not path.name.endswith(atomic.TMP_SUFFIX)
        )
        yield from keys

    def sweep_staged(self, prefix: str, older_than: float) -> int:
        """Delete the temporary siblings (``.<name>.*.tmp``) under ``prefix`` that a killed
        writer left, once they are ``older_than`` seconds old."""
        base = self.path_of(prefix) if prefix else self.root
        if not base.is_dir():
            return 0
        cutoff, swept = time.time() - older_than, 0
        for path in base.rglob(f".*{atomic.TMP_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):  # its writer finished meanwhile
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    swept += 1
        return swept

    def list_dirs(self, prefix: str) -> list[str]:
        base = self.path_of(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def describe(self) -> dict[str, str]:
        return {"kind": "local", "root": str(self.root)}
