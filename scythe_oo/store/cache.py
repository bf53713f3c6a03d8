"""FileCache: local copies of the input files that specs refer to by URI.

Specs carry file references (file://, s3://, http(s)://) instead of bytes, and thousands of runs
on one worker usually point at the same few weather or geometry files. Caching by URI makes every
use after the first free, and atomic writes let many worker processes share one cache directory
without locks.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from scythe_oo.errors import ArtifactNotFoundError, StoreError
from scythe_oo.store.s3 import (
    atomic_write_stream,
    boto_errors,
    s3_client,
    split_s3_uri,
    store_error_from_boto,
)

__all__ = ["FileCache"]

_CHUNK = 1 << 20
_MAX_RETRY_DELAY = 30.0


def _default_root() -> Path:
    env = os.environ.get("SCYTHE_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "scythe-oo" / "files"


def _to_path(value: str | os.PathLike[str]) -> Path:
    return Path(value).expanduser()


def _shown_url(url: str) -> str:
    """``url`` fit for an error message: no password, no query (presigned URLs carry tokens)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = f"{parts.username}:***@{netloc.rpartition('@')[2]}"
    query = "<redacted>" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _basename(path: str) -> str:
    # Decode after splitting so an encoded "%2F" cannot smuggle a directory into the cache.
    name = unquote(path.rstrip("/").rpartition("/")[2])
    if name in ("", ".", "..") or "/" in name or "\0" in name:
        return "download"
    return name


class _TransientHTTPError(Exception):
    """One HTTP attempt failed in a way that a later attempt may not."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


def _retry_after(value: str | None) -> float | None:
    # Only the delta-seconds form; an HTTP-date is rare for 429/503 and backoff covers it.
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@attrs.frozen(kw_only=True)
class FileCache:
    """Maps file reference URIs to local paths, downloading each remote URI at most once.

    Entries are keyed by the full URI, never by file name alone, so two different
    ``.../weather.epw`` files cannot shadow each other. Nothing is ever evicted: the cache is
    meant for a worker's input files, which are few and reused.
    """

    root: Path = attrs.field(factory=_default_root, converter=_to_path)
    http_attempts: int = 5
    """Total tries for an http(s) download before giving up on transient errors."""
    http_backoff: float = 0.5
    """Seconds before the first retry; doubled (with jitter) for each retry after that."""
    http_timeout: float = 60.0

    def path_for(self, uri: str) -> Path:
        """Where ``uri`` is (or would be) cached; the layout is stable across processes."""
        digest = hashlib.sha256(uri.encode()).hexdigest()
        name = _basename(split_s3_uri(uri)[1] if uri.startswith("s3://") else urlsplit(uri).path)
        return self.root / digest[:2] / digest / name

    def fetch(self, uri: str) -> Path:
        """A local path with the content of ``uri``; a cache hit makes no network call."""
        scheme = uri.partition("://")[0].lower() if "://" in uri else ""
        if scheme == "file":
            return self._local_file(uri)
        if scheme not in ("s3", "http", "https"):
            raise StoreError(
                f"cannot fetch {_shown_url(uri)!r}: use a file://, s3://, http:// or https:// URI"
            )
        dest = self.path_for(uri)
        if dest.is_file():
            return dest
        if scheme == "s3":
            self._fetch_s3(uri, dest)
        else:
            self._fetch_http(uri, dest)
        return dest

    def _local_file(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"{uri} names another host; only local file:// URIs can be read")
        path = Path(urllib.request.url2pathname(parts.path))
        if not path.is_file():
            raise ArtifactNotFoundError(f"no file at {uri}")
        return path

    def _fetch_s3(self, uri: str, dest: Path) -> None:
        bucket, key = split_s3_uri(uri)
        if not bucket or not key or key.endswith("/"):
            raise StoreError(f"{uri} does not name an object; expected s3://bucket/key")
        try:
            atomic_write_stream(dest, lambda fh: s3_client().download_fileobj(bucket, key, fh))
        except boto_errors() as exc:
            raise store_error_from_boto(exc, uri, "fetching") from exc

    def _fetch_http(self, url: str, dest: Path) -> None:
        shown = _shown_url(url)
        attempts = max(1, self.http_attempts)
        for attempt in range(1, attempts + 1):
            try:
                atomic_write_stream(dest, lambda fh: self._download_once(url, shown, fh))
                return
            except _TransientHTTPError as exc:
                if attempt == attempts:
                    raise StoreError(
                        f"fetching {shown} failed after {attempts} attempts; last error: {exc}"
                    ) from exc
                delay = self.http_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                time.sleep(min(delay, _MAX_RETRY_DELAY))

    def _download_once(self, url: str, shown: str, out: IO[bytes]) -> None:
        request = urllib.request.Request(url, headers={"User-Agent": "scythe-oo"})
        try:
            response = urllib.request.urlopen(request, timeout=self.http_timeout)
        except urllib.error.HTTPError as exc:
            with exc:
                status, retry_after = exc.code, _retry_after(exc.headers.get("Retry-After"))
            if status == 429 or status >= 500:
                raise _TransientHTTPError(f"HTTP {status}", retry_after) from exc
            if status in (404, 410):
                raise ArtifactNotFoundError(f"no file at {shown}: HTTP {status}") from exc
            raise StoreError(f"fetching {shown} failed with HTTP {status} {exc.reason}") from exc
        except ValueError as exc:  # malformed URL: retrying cannot help
            raise StoreError(f"cannot fetch {shown}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, DNS
            raise _TransientHTTPError(f"{type(exc).__name__}: {exc}") from exc
        with response:
            if response.status != 200:
                raise StoreError(f"fetching {shown} returned HTTP {response.status}, not 200")
            expected = response.headers.get("Content-Length")
            received = 0
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    raise _TransientHTTPError(f"body cut off: {type(exc).__name__}: {exc}") from exc
                if not chunk:
                    break
                out.write(chunk)  # outside the try: a full disk is not worth retrying
                received += len(chunk)
            # A dropped connection can look like a clean end of body; never cache a short file.
            if expected is not None and expected.isdigit() and int(expected) != received:
                raise _TransientHTTPError(f"got {received} of {expected} bytes")
