"""S3Store: run folders in an S3 bucket, or in anything that speaks the S3 API.

Distributed workers on other machines need one place that all of them can read and write; S3 is
that place, and a single S3 object write is atomic, which is the one guarantee the ArtifactStore
protocol asks for. The endpoint is whatever boto3 resolves by itself (AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_S3, profiles), so real AWS, MinIO and moto all work without code changes here.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import IO

import attrs
import botocore.exceptions

from scythe_oo.definition.errors import StoreError
from scythe_oo.storage import atomic
from scythe_oo.storage.base import join_key
from scythe_oo.storage.s3_client import (
    STREAM_ERRORS,
    boto_errors,
    error_code,
    http_status,
    is_not_found,
    s3_client,
    split_s3_uri,
    store_error_from_boto,
)

_BODY_READ_ATTEMPTS = 3
_CONFLICT_ATTEMPTS = 5
_FETCH_ATTEMPTS = 3
_CHUNK = 1 << 20


def _strip_prefix(value: str) -> str:
    return value.strip("/")


def _check_bucket(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not value or "/" in value:
        raise ValueError(f"bucket must be a bare bucket name like 'my-bucket', got {value!r}")


# --------------------------------------------------------------------------------------------
# S3Store
# --------------------------------------------------------------------------------------------


@attrs.frozen
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
                status = http_status(exc)
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
            atomic.write_stream(
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
            if is_not_found(exc):
                return False
            raise store_error_from_boto(exc, self._uri_of_full(full), "checking") from exc
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self._uri_of_full(full), "checking") from exc
        return True

    def sweep_staged(self, prefix: str, older_than: float) -> int:
        """Abort the multipart uploads under ``prefix`` begun more than ``older_than`` seconds
        ago: an upload whose process was killed is never completed, and S3 bills its parts
        until it is aborted."""
        full = self._list_prefix(prefix)
        cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=older_than)
        client, swept = s3_client(), 0
        try:
            for page in client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=full
            ):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] < cutoff:
                        client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                        swept += 1
        except boto_errors() as exc:
            raise store_error_from_boto(exc, self.uri(prefix), "sweeping") from exc
        return swept

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


def fetch_current(uri: str, path_for: Callable[[str, str | None], Path]) -> Path:
    """The file cache's S3 source: the current version of ``uri``, downloaded unless cached.

    ``path_for(uri, version)`` names the cached copy of a version. The GET carries If-Match,
    so bytes of another version can never land under this ETag; an object overwritten between
    the HEAD and the GET is looked up again.
    """
    bucket, key = split_s3_uri(uri)
    if not bucket or not key or key.endswith("/"):
        raise StoreError(f"{uri} does not name an object; expected s3://bucket/key")
    client = s3_client()
    for attempt in range(1, _FETCH_ATTEMPTS + 1):
        try:
            etag = str(client.head_object(Bucket=bucket, Key=key)["ETag"])
            dest = path_for(uri, etag)
            if not dest.is_file():
                atomic.write_stream(dest, functools.partial(_download, bucket, key, etag))
            return dest
        except STREAM_ERRORS as exc:  # body cut off: botocore retried only the request
            if attempt == _FETCH_ATTEMPTS:
                raise store_error_from_boto(exc, uri, "fetching") from exc
        except boto_errors() as exc:
            changed = (
                isinstance(exc, botocore.exceptions.ClientError)
                and error_code(exc) == "PreconditionFailed"
            )
            if not changed or attempt == _FETCH_ATTEMPTS:
                raise store_error_from_boto(exc, uri, "fetching") from exc
            # Overwritten between HEAD and GET: look up the new version.
    raise AssertionError("unreachable: the last attempt returns or raises")


def _download(bucket: str, key: str, etag: str, out: IO[bytes]) -> None:
    body = s3_client().get_object(Bucket=bucket, Key=key, IfMatch=etag)["Body"]
    with closing(body):
        for chunk in body.iter_chunks(_CHUNK):
            out.write(chunk)
