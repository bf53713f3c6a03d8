"""The S3 client and the translation of boto errors, shared by S3Store and the file cache.

Clients are built on first use (never at import or when a store is constructed), one per
process and thread, and every boto failure becomes a StoreError whose message never contains
a secret.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import boto3.exceptions
import boto3.session
import botocore.exceptions
import botocore.session
import s3transfer.exceptions
from botocore.config import Config
from botocore.loaders import Loader

from scythe_oo.definition.errors import ArtifactNotFoundError, StoreError
from scythe_oo.definition.redact import redact

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


# --------------------------------------------------------------------------------------------
# Client factory
# --------------------------------------------------------------------------------------------

# A client reads these at creation time and never again, so a cached client must not outlive a
# change to any of them (tests point AWS_ENDPOINT_URL at a fresh moto server, for example).
_CLIENT_ENV = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_REGION",
    "AWS_MAX_ATTEMPTS",
)

_clients: dict[tuple[str | int | None, ...], S3Client] = {}
_clients_lock = threading.Lock()
_sessions: dict[int, boto3.session.Session] = {}
_models: Loader | None = None
"""botocore's loader of service models, shared by every session of the process and kept
across fork: a session that loads the S3 model afresh costs 60-100 ms of CPU."""


def _forget_clients_after_fork() -> None:
    # A forked child shares the parent's pooled sockets; reusing them corrupts both sides'
    # HTTP streams. The lock may also have been held by a thread that does not exist here,
    # and so may a session's credential lock. The loaded models are only data, and stay.
    global _clients_lock
    _clients.clear()
    _sessions.clear()
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_clients_after_fork)


def _session() -> boto3.session.Session:
    """The process's session, used only under ``_clients_lock`` (a session is not safe to
    use from several threads; the clients it makes are)."""
    global _models
    session = _sessions.get(os.getpid())
    if session is None:
        core = botocore.session.get_session()
        if _models is None:
            _models = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _models)
        session = _sessions[os.getpid()] = boto3.session.Session(botocore_session=core)
    return session


def preload() -> None:
    """Load boto3 and the S3 models into this process, so that the processes forked from it
    make their first client in about 25 ms of CPU instead of 0.5 s.

    A distributed worker calls this before forking its leaf processes: each of them would
    otherwise pay that half second at its first batch, on the cores that run leaves (at
    eight single-process workers sharing a core, 4 s of a 20 s sweep). The client made here
    is thrown away unused; it carries placeholder credentials so that making it looks up
    nothing and opens no connection."""
    with _clients_lock:
        _session().client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="preload",
            aws_secret_access_key="preload",  # a placeholder, never sent
        )


def _new_client() -> S3Client:
    config = Config(
        # "standard" retries throttling (SlowDown, 503) and connection errors with jittered
        # exponential backoff; 10 attempts rides out a brief S3 or network hiccup in a long run.
        retries={"max_attempts": _max_attempts(), "mode": "standard"},
        connect_timeout=10,
        read_timeout=60,
    )
    return _session().client("s3", config=config)


def _max_attempts() -> int:
    """AWS_MAX_ATTEMPTS when set (the usual AWS setting), else 10."""
    try:
        return max(1, int(os.environ.get("AWS_MAX_ATTEMPTS", "10")))
    except ValueError:
        return 10


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


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def http_status(exc: botocore.exceptions.ClientError) -> int | None:
    return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")


def is_not_found(exc: botocore.exceptions.ClientError) -> bool:
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
        if is_not_found(cause):
            return ArtifactNotFoundError(f"no object at {uri}")
        code = error_code(cause) or "unknown error"
        detail = cause.response.get("Error", {}).get("Message", "")
        status = http_status(cause)
        text = f"{action} {uri} failed: S3 returned {code}"
        if status:
            text += f" (HTTP {status})"
        if detail:
            text += f": {detail}"
        return StoreError(redact(text))
    return StoreError(redact(f"{action} {uri} failed: {type(cause).__name__}: {cause}"))


def boto_errors() -> tuple[type[Exception], ...]:
    """Everything boto3 raises for a failed request, for one ``except boto_errors():`` clause.

    This module is only loaded once a store or a spec uses S3 (see storage.factory), so
    importing boto3 here costs nothing to LocalStore-only users.
    """
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
