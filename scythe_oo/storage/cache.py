"""FileCache: local copies of the input files that specs refer to by URI.

Specs carry file references (file://, s3://, http(s)://) instead of bytes, and thousands of runs
on one worker usually point at the same few weather or geometry files. Caching makes every use
after the first cheap, and atomic writes let many worker processes share one cache directory
without locks.

A URI names a place, not content: a weather file can be overwritten in its bucket while a
worker that cached the old one keeps running for days. So each copy is filed under the version
the server reported for it (the ETag, or Last-Modified), and a process checks that version again
once its last check is older than ``revalidate_after``. A stale copy is never served past that
window, and an old copy is never overwritten under a leaf that is still reading it.
"""

from __future__ import annotations

import hashlib
import http.client
import importlib
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import Message
from pathlib import Path
from typing import IO, TypeVar
from urllib.parse import unquote, urlsplit, urlunsplit

import attrs

from scythe_oo.definition.errors import ArtifactNotFoundError, StoreError
from scythe_oo.definition.settings import Settings
from scythe_oo.storage import atomic

__all__ = ["FileCache"]

REMOTE_SOURCES = {"s3": "scythe_oo.storage.s3"}
"""Schemes served by an optional backend, and the module whose ``fetch_current(uri,
path_for)`` serves them. Loaded on first use, so that a worker that never reads s3:// pays
nothing for boto3."""

_T = TypeVar("_T")
_CHUNK = 1 << 20
_MAX_RETRY_DELAY = 30.0
_UNVERSIONED = "unversioned"


def _default_root() -> Path:
    return Settings.from_env().cache_dir


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


def _version_of(headers: Message) -> str | None:
    """What identifies the bytes behind a URL, from response headers; None if nothing does."""
    return headers.get("ETag") or headers.get("Last-Modified") or None


def _version_dir(version: str | None) -> str:
    # Hashed: ETags are quoted and Last-Modified has spaces, commas and colons.
    if version is None:
        return _UNVERSIONED
    return hashlib.sha256(version.encode()).hexdigest()[:16]


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
    """Maps file reference URIs to local paths, downloading each version of a remote file once.

    Entries are keyed by the full URI, never by file name alone, so two different
    ``.../weather.epw`` files cannot shadow each other, and then by the version the server gave
    for the bytes. A server that reports no version at all (no ETag, no Last-Modified) is
    trusted never to change what a URL serves. Nothing is ever evicted: the cache is meant for a
    worker's input files, which are few and reused.
    """

    root: Path = attrs.field(factory=_default_root, converter=_to_path)
    revalidate_after: float = 60.0
    """Seconds a process trusts its last version check of a URI; 0 checks on every fetch.

    A file overwritten at the same URI reaches every worker within this long. Within it, a
    fetch is a dictionary lookup, which is what keeps 50 ms simulations fast.
    """
    http_attempts: int = 5
    """Total tries for an http(s) request before giving up on transient errors."""
    http_backoff: float = 0.5
    """Seconds before the first retry; doubled (with jitter) for each retry after that."""
    http_timeout: float = 60.0
    _checked: dict[str, tuple[Path, float]] = attrs.field(
        factory=dict, init=False, eq=False, repr=False
    )
    """URI -> (cached path, monotonic time of the version check), for this process only."""

    def path_for(self, uri: str, version: str | None) -> Path:
        """Where ``version`` of ``uri`` is (or would be) cached; stable across processes."""
        digest = hashlib.sha256(uri.encode()).hexdigest()
        # S3 keys may hold '?' and '#', which a URL parser would cut off.
        name = _basename(uri.partition("://")[2] if uri.startswith("s3://") else urlsplit(uri).path)
        return self.root / digest[:2] / digest / _version_dir(version) / name

    def fetch(self, uri: str) -> Path:
        """A local path with the current content of ``uri``.

        A URI checked less than ``revalidate_after`` seconds ago makes no network call; after
        that, one small request (HEAD) confirms the cached version or finds a new one.
        """
        scheme = uri.partition("://")[0].lower() if "://" in uri else ""
        if scheme == "file":
            return self._local_file(uri)
        if scheme not in ("s3", "http", "https"):
            raise StoreError(
                f"cannot fetch {_shown_url(uri)!r}: use a file://, s3://, http:// or https:// URI"
            )
        now = time.monotonic()
        known = self._checked.get(uri)
        if known is not None and now - known[1] < self.revalidate_after and known[0].is_file():
            return known[0]
        if scheme in REMOTE_SOURCES:
            # A heavy optional backend (boto3), imported only when a spec refers to it.
            source = importlib.import_module(REMOTE_SOURCES[scheme])
            path: Path = source.fetch_current(uri, self.path_for)
        else:
            path = self._fetch_http(uri)
        self._checked[uri] = (path, now)
        return path

    def _local_file(self, uri: str) -> Path:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise StoreError(f"{uri} names another host; only local file:// URIs can be read")
        path = Path(urllib.request.url2pathname(parts.path))
        if not path.is_file():
            raise ArtifactNotFoundError(f"no file at {uri}")
        return path

    # -- http ----------------------------------------------------------------------------

    def _fetch_http(self, url: str) -> Path:
        shown = _shown_url(url)
        cached = self.path_for(url, self._with_retries(shown, lambda: self._head(url)))
        if cached.is_file():
            return cached
        # The GET's own headers name the copy: if the file changed since the HEAD, the new
        # bytes go under the new version, never under the old one.
        return self._with_retries(shown, lambda: self._download_once(url))

    def _with_retries(self, shown: str, attempt_once: Callable[[], _T]) -> _T:
        attempts = max(1, self.http_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return attempt_once()
            except _TransientHTTPError as exc:
                if attempt == attempts:
                    raise StoreError(
                        f"fetching {shown} failed after {attempts} attempts; last error: {exc}"
                    ) from exc
                delay = self.http_backoff * 2 ** (attempt - 1) * random.uniform(0.5, 1.0)
                if exc.retry_after is not None:
                    delay = max(delay, exc.retry_after)
                time.sleep(min(delay, _MAX_RETRY_DELAY))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _open(self, url: str, method: str) -> http.client.HTTPResponse:
        shown = _shown_url(url)
        request = urllib.request.Request(url, method=method, headers={"User-Agent": "scythe-oo"})
        try:
            response: http.client.HTTPResponse = urllib.request.urlopen(
                request, timeout=self.http_timeout
            )
        except urllib.error.HTTPError as exc:
            with exc:
                status, retry_after = exc.code, _retry_after(exc.headers.get("Retry-After"))
            if status == 429 or (status >= 500 and status != 501):
                raise _TransientHTTPError(f"HTTP {status}", retry_after) from exc
            if status in (404, 410):
                raise ArtifactNotFoundError(f"no file at {shown}: HTTP {status}") from exc
            message = f"fetching {shown} failed with HTTP {status} {exc.reason}"
            raise _HTTPRefused(status, message) from exc
        except ValueError as exc:  # malformed URL: retrying cannot help
            raise StoreError(f"cannot fetch {shown}: {exc}") from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, DNS
            raise _TransientHTTPError(f"{type(exc).__name__}: {exc}") from exc
        if response.status != 200:
            response.close()
            raise StoreError(f"fetching {shown} returned HTTP {response.status}, not 200")
        return response

    def _head(self, url: str) -> str | None:
        """The version a HEAD reports, or None from a server that does not answer HEAD."""
        try:
            with self._open(url, "HEAD") as response:
                return _version_of(response.headers)
        except _HTTPRefused as exc:
            if exc.status in (403, 405, 501):  # HEAD not allowed (presigned GET URLs: 403)
                return None
            raise

    def _download_once(self, url: str) -> Path:
        with self._open(url, "GET") as response:
            dest = self.path_for(url, _version_of(response.headers))
            if dest.is_file():  # HEAD refused or raced: this version is here already
                return dest
            expected = response.headers.get("Content-Length")

            def copy_body(out: IO[bytes]) -> None:
                received = 0
                while True:
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        reason = f"body cut off: {type(exc).__name__}: {exc}"
                        raise _TransientHTTPError(reason) from exc
                    if not chunk:
                        break
                    out.write(chunk)  # outside the try: a full disk is not worth retrying
                    received += len(chunk)
                # A dropped connection can look like a clean end of body; never cache a short file.
                if expected is not None and expected.isdigit() and int(expected) != received:
                    raise _TransientHTTPError(f"got {received} of {expected} bytes")

            atomic.write_stream(dest, copy_body)
            return dest


class _HTTPRefused(StoreError):
    """A definite refusal (4xx but 404/410/429, or 501); servers may refuse HEAD yet allow GET."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
