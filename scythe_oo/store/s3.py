"""S3Store: run folders in an S3 bucket, or in anything that speaks the S3 API.

Distributed workers on other machines need one place that all of them can read and write; S3 is
that place, and a single S3 object write is atomic, which is the one guarantee the ArtifactStore
protocol asks for. The endpoint is whatever boto3 resolves by itself (AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_S3, profiles), so real AWS, MinIO and moto all work without code changes here.
"""

from __future__ import annotations

import functools
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING

import attrs
import botocore.exceptions

from scythe_oo.errors import ArtifactNotFoundError, StoreError
from scythe_oo.store.base import join_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "S3Store",
    "atomic_write_stream",
    "boto_errors",
    "s3_client",
    "split_s3_uri",
    "store_error_from_boto",
]

# --------------------------------------------------------------------------------------------
# Client factory
# --------------------------------------------------------------------------------------------

# A client reads these at creation time and never again, so a cached client must not outlive a
# change to any of them (tests point AWS_ENDPOINT_URL at a fresh moto server, for example).
_CLIENT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_DEFAULT_REGION")

_clients: dict[tuple[str | int | None, ...], S3Client] = {}
_clients_lock = threading.Lock()


def _forget_clients_after_fork() -> None:
    # A forked child shares the parent's pooled sockets; reusing them corrupts both sides'
    # HTTP streams. The lock may also have been held by a thread that does not exist here.
    global _clients_lock
    _clients.clear()
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_clients_after_fork)


def _new_client() -> S3Client:
    # Imported here so that importing scythe_oo.store stays cheap for LocalStore-only users.
    import boto3.session
    from botocore.config import Config

    config = Config(
        # "standard" retries throttling (SlowDown, 503) and connection errors with jittered
        # exponential backoff; 10 attempts rides out a brief S3 or network hiccup in a long run.
        retries={"max_attempts": 10, "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    # A private Session per client: the default session is not safe to use from several threads.
    return boto3.session.Session().client("s3", config=config)


def s3_client() -> S3Client:
    """The S3 client for this process and thread, created on first use.

    Clients are never created at import or construction so that stores stay cheap to build and
    picklable. They are keyed by pid because a client inherited through fork() shares sockets
    with its parent, and by thread so no pool is contended across worker threads.
    """
    key = (os.getpid(), threading.get_ident(), *(os.environ.get(n) for n in _CLIENT_ENV))
    client = _clients.get(key)
    if client is not None:
        return client
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            # Drop clients of threads that have ended, so short-lived threads do not leak pools.
            live = {t.ident for t in threading.enumerate()}
            for stale in [k for k in _clients if k[0] != key[0] or k[1] not in live]:
                del _clients[stale]
            client = _clients[key] = _new_client()
    return client


# --------------------------------------------------------------------------------------------
# Shared helpers (also used by FileCache)
# --------------------------------------------------------------------------------------------


def atomic_write_stream(dest: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Stream into a temporary sibling of ``dest`` and rename it into place.

    local.atomic_write_bytes needs the whole payload in memory and atomic_copy_file needs a
    local source; a download has neither, so this is their streaming sibling. It uses the same
    ``.<name>.*.tmp`` naming, which LocalStore.list_keys already skips, and could move next to
    them in local.py.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ``("bucket", "a/b")``.

    Parsed by hand rather than with urllib.parse because S3 keys may legally contain ``?`` and
    ``#``, which a URL parser would cut off as query or fragment.
    """
    if not uri.startswith("s3://"):
        raise StoreError(f"{uri!r} is not an s3:// URI")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


_NOT_FOUND_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")


def _scrub(message: str) -> str:
    # S3 error messages do not echo secrets, but a misbehaving proxy or endpoint might; a run
    # manifest or a log line is the last place a secret key should end up.
    for name in _SECRET_ENV:
        secret = os.environ.get(name)
        if secret:
            message = message.replace(secret, "***")
    return message


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _http_status(exc: botocore.exceptions.ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def _is_not_found(exc: botocore.exceptions.ClientError) -> bool:
    return error_code(exc) in _NOT_FOUND_CODES


def store_error_from_boto(exc: Exception, uri: str, action: str) -> StoreError:
    """The scythe error for a boto failure on ``uri``, for callers to ``raise ... from exc``.

    Callers of a store should not have to know botocore to tell "missing" from "broken", and the
    message is built from the error code and S3's own message only, never from the request.
    """
    cause: BaseException = exc
    # upload_file wraps the ClientError in S3UploadFailedError; download_fileobj wraps its last
    # streaming error in RetriesExceededError. Classify by what S3 actually said.
    if isinstance(exc.__cause__, botocore.exceptions.ClientError):
        cause = exc.__cause__
    elif isinstance(getattr(exc, "last_exception", None), Exception):
        cause = exc.last_exception  # type: ignore[attr-defined]
    if isinstance(cause, botocore.exceptions.ClientError):
        if _is_not_found(cause):
            return ArtifactNotFoundError(f"no object at {uri}")
        code = error_code(cause) or "unknown error"
        detail = cause.response.get("Error", {}).get("Message", "")
        status = _http_status(cause)
        text = f"{action} {uri} failed: S3 returned {code}"
        if status:
            text += f" (HTTP {status})"
        if detail:
            text += f": {detail}"
        return StoreError(_scrub(text))
    return StoreError(_scrub(f"{action} {uri} failed: {type(cause).__name__}: {cause}"))


@functools.cache
def boto_errors() -> tuple[type[Exception], ...]:
    """Everything boto3 raises for a failed request, for one ``except boto_errors():`` clause.

    A function, not a constant, because importing boto3/s3transfer costs half a second and is
    only needed once a client exists (and so once they are loaded anyway).
    """
    import boto3.exceptions
    import s3transfer.exceptions

    return (
        botocore.exceptions.ClientError,
        botocore.exceptions.BotoCoreError,
        boto3.exceptions.Boto3Error,  # S3UploadFailedError from upload_file
        s3transfer.exceptions.RetriesExceededError,  # download_fileobj's body retries ran out
    )


# Raised while reading a response body, after botocore's own retry loop has already returned.
STREAM_ERRORS = (
    botocore.exceptions.ResponseStreamingError,
    botocore.exceptions.IncompleteReadError,
    botocore.exceptions.ReadTimeoutError,
)
_BODY_READ_ATTEMPTS = 3
_CONFLICT_ATTEMPTS = 5


def _strip_prefix(value: str) -> str:
    return value.strip("/")


def _check_bucket(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not value or "/" in value:
        raise ValueError(f"bucket must be a bare bucket name like 'my-bucket', got {value!r}")


# --------------------------------------------------------------------------------------------
# S3Store
# --------------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class S3Store:
    """Keeps run folders under ``s3://bucket/prefix/``.

    Holds only names, no client, so it pickles into worker processes; each process builds its
    own client on first use (see s3_client).
    """

    bucket: str = attrs.field(validator=_check_bucket)
    prefix: str = attrs.field(default="scythe", converter=_strip_prefix)

    def _full(self, key: str) -> str:
        # S3 keys are literal strings: "a/../b" is its own object, not "b". Refusing dot
        # segments keeps a key meaning the same thing here as in LocalStore.
        if any(part in (".", "..") for part in key.split("/")):
            raise StoreError(f"key {key!r} contains '.' or '..' segments; S3 keys are literal")
        return join_key(self.prefix, key)

    def _key(self, key: str) -> str:
        if not key.strip("/"):
            raise StoreError("an empty key names the store prefix itself, not an object")
        return self._full(key)

    def _list_prefix(self, prefix: str) -> str:
        # A trailing slash makes "exp" match the folder exp/ but not a sibling like expx/,
        # the same thing LocalStore's directory walk does.
        if any(part in (".", "..") for part in prefix.split("/")):
            raise StoreError(f"prefix {prefix!r} contains '.' or '..' segments")
        full = join_key(self.prefix, prefix)
        return f"{full}/" if full else ""

    def _uri_of_full(self, full_key: str) -> str:
        return f"s3://{self.bucket}/{full_key}"

    def uri(self, key: str) -> str:
        return self._uri_of_full(self._full(key))

    def key_of(self, uri: str) -> str | None:
        if not uri.startswith("s3://"):
            return None
        bucket, full = split_s3_uri(uri)
        if bucket != self.bucket:
            return None
        if not self.prefix:
            return full
        if full == self.prefix:
            return ""
        if full.startswith(f"{self.prefix}/"):
            return full[len(self.prefix) + 1 :]
        return None

    def put_bytes(self, key: str, data: bytes) -> str:
        full = self._key(key)
        try:
            s3_client().put_object(Bucket=self.bucket, Key=full, Body=data)
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "writing") from exc
        return self._uri_of_full(full)

    def put_file(self, key: str, path: Path) -> str:
        full = self._key(key)
        try:
            # Large files go multipart; the object still only appears when the upload completes.
            s3_client().upload_file(str(path), self.bucket, full)
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "uploading to") from exc
        return self._uri_of_full(full)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        full = self._key(key)
        uri = self._uri_of_full(full)
        # Conditional write (If-None-Match: *): S3 itself decides who wins, so two workers
        # claiming the same key cannot both succeed. One blind spot: if the winning request's
        # response is lost and botocore retries it, the retry sees our own object and we report
        # False. Callers treat False as "someone else owns it", which is the safe mistake.
        for attempt in range(_CONFLICT_ATTEMPTS):
            try:
                s3_client().put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*")
                return True
            except botocore.exceptions.ClientError as exc:
                status = _http_status(exc)
                if error_code(exc) == "PreconditionFailed" or status == 412:
                    return False
                # 409: another conditional write to this key is in flight; AWS says retry.
                if error_code(exc) == "ConditionalRequestConflict" or status == 409:
                    time.sleep(0.05 * 2**attempt)
                    continue
                raise store_error_from_boto(exc, uri, "creating") from exc
            except boto_errors() as exc:
                raise store_error_from_boto(exc, uri, "creating") from exc
        raise StoreError(f"creating {uri} failed: concurrent conditional writes kept conflicting")

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        uri = self._uri_of_full(full)
        for attempt in range(1, _BODY_READ_ATTEMPTS + 1):
            try:
                body = s3_client().get_object(Bucket=self.bucket, Key=full)["Body"]
                try:
                    return body.read()
                finally:
                    body.close()
            except STREAM_ERRORS as exc:
                # botocore retries the request but not a body cut off mid-read; do that here.
                if attempt == _BODY_READ_ATTEMPTS:
                    raise store_error_from_boto(exc, uri, "reading") from exc
            except boto_errors() as exc:
                raise store_error_from_boto(exc, uri, "reading") from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def get_file(self, key: str, dest: Path) -> Path:
        full = self._key(key)
        dest = Path(dest)
        try:
            # download_fileobj retries interrupted bodies itself and streams, so large result
            # files never sit in memory.
            atomic_write_stream(
                dest, lambda fh: s3_client().download_fileobj(self.bucket, full, fh)
            )
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "downloading") from exc
        return dest

    def exists(self, key: str) -> bool:
        full = self._key(key)
        try:
            s3_client().head_object(Bucket=self.bucket, Key=full)
        except botocore.exceptions.ClientError as exc:
            if _is_not_found(exc):
                return False
            raise store_error_from_boto(exc, self._uri_of_full(full), "checking") from exc
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "checking") from exc
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        full = self._list_prefix(prefix)
        skip = len(self.prefix) + 1 if self.prefix else 0
        paginator = s3_client().get_paginator("list_objects_v2")
        try:
            # S3 returns keys in UTF-8 byte order, which is the lexical order the protocol asks
            # for; streaming page by page keeps memory flat for millions of result files.
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
                for obj in page.get("Contents", []):
                    name = obj.get("Key", "")
                    if name and not name.endswith("/"):  # "folder" markers are not objects
                        yield name[skip:]
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "listing") from exc

    def list_dirs(self, prefix: str) -> list[str]:
        full = self._list_prefix(prefix)
        paginator = s3_client().get_paginator("list_objects_v2")
        names: set[str] = set()
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
                for common in page.get("CommonPrefixes", []):
                    name = common.get("Prefix", "")[len(full) :].rstrip("/")
                    if name:
                        names.add(name)
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "listing") from exc
        return sorted(names)

    def describe(self) -> dict[str, str]:
        return {"kind": "s3", "bucket": self.bucket, "prefix": self.prefix}
