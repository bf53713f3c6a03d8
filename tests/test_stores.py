"""Contract tests: LocalStore and S3Store must be interchangeable, so both run the same tests.

S3 runs against a real moto HTTP server (see fixtures_s3.py), never a patched client, so
signing, retries, pagination and error parsing are exercised as in production.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import multiprocessing
import os
import pickle
import re
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import pytest

from scythe_oo import ArtifactStore, LocalStore, S3Store
from scythe_oo.definition.errors import ArtifactNotFoundError, StoreError
from scythe_oo.storage import s3_client as s3_module
from scythe_oo.storage.cache import FileCache

# --------------------------------------------------------------------------------------------
# Store contract
# --------------------------------------------------------------------------------------------


@pytest.fixture
def store(local_or_s3_store: ArtifactStore) -> ArtifactStore:
    return local_or_s3_store


def test_implements_protocol(store: ArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_put_get_bytes_round_trip(store: ArtifactStore) -> None:
    uri = store.put_bytes("exp/v1/run/specs.json", b'{"a": 1}')
    assert uri == store.uri("exp/v1/run/specs.json")
    assert store.get_bytes("exp/v1/run/specs.json") == b'{"a": 1}'
    store.put_bytes("exp/v1/run/specs.json", b"replaced")
    assert store.get_bytes("exp/v1/run/specs.json") == b"replaced"
    store.put_bytes("empty", b"")
    assert store.get_bytes("empty") == b""


def test_put_file_get_file(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    payload = os.urandom(256 * 1024)
    src.write_bytes(payload)
    uri = store.put_file("inputs/blob.bin", src)
    assert uri == store.uri("inputs/blob.bin")

    dest = tmp_path / "out" / "nested" / "blob.bin"
    assert store.get_file("inputs/blob.bin", dest) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["blob.bin"]  # no temp file left behind


def test_uri_key_of_round_trip(store: ArtifactStore) -> None:
    for key in ["a.txt", "exp/v1.0.0/2025-01-01_00-00-00/specs.pq", "with space/ü.bin"]:
        assert store.key_of(store.uri(key)) == key
        assert store.key_of(store.put_bytes(key, b"x")) == key


def test_key_of_foreign_uris(store: ArtifactStore, tmp_path: Path) -> None:
    assert store.key_of("https://example.com/a.txt") is None
    if isinstance(store, S3Store):
        assert store.key_of("file:///tmp/a.txt") is None
        assert store.key_of(f"s3://other-{store.bucket}/scythe/a.txt") is None
        assert store.key_of(f"s3://{store.bucket}/other/a.txt") is None
        assert store.key_of(f"s3://{store.bucket}/scythex/a.txt") is None
        assert store.uri("a.txt") == f"s3://{store.bucket}/scythe/a.txt"
    else:
        assert store.key_of(f"s3://bucket/{tmp_path}/store/a.txt") is None
        assert store.key_of((tmp_path / "elsewhere" / "a.txt").as_uri()) is None


def test_exists(store: ArtifactStore) -> None:
    assert not store.exists("exp/x.txt")
    store.put_bytes("exp/x.txt", b"x")
    assert store.exists("exp/x.txt")
    assert not store.exists("exp/y.txt")


def test_list_keys_order_and_prefix(store: ArtifactStore) -> None:
    keys = ["exp/b/2.txt", "exp/a/1.txt", "exp/a/0.txt", "exp/c.txt", "expx/z.txt", "other/q"]
    for key in keys:
        store.put_bytes(key, key.encode())
    assert list(store.list_keys("exp")) == [
        "exp/a/0.txt",
        "exp/a/1.txt",
        "exp/b/2.txt",
        "exp/c.txt",
    ]
    assert list(store.list_keys("exp/a")) == ["exp/a/0.txt", "exp/a/1.txt"]
    assert list(store.list_keys("exp/")) == list(store.list_keys("exp"))
    assert list(store.list_keys("")) == sorted(keys)
    assert list(store.list_keys("nothing/here")) == []


def test_list_dirs(store: ArtifactStore) -> None:
    for key in ["exp/v1/r1/a", "exp/v1/r2/a", "exp/v2/r1/a", "exp/file.txt", "expx/v9/a"]:
        store.put_bytes(key, b"x")
    assert store.list_dirs("exp") == ["v1", "v2"]
    assert store.list_dirs("exp/v1") == ["r1", "r2"]
    assert store.list_dirs("") == ["exp", "expx"]
    assert store.list_dirs("exp/v1/r1") == []
    assert store.list_dirs("missing") == []


def test_create_exclusive(store: ArtifactStore) -> None:
    assert store.create_exclusive("locks/claim", b"first") is True
    assert store.create_exclusive("locks/claim", b"second") is False
    assert store.get_bytes("locks/claim") == b"first"


def test_create_exclusive_race_has_one_winner(store: ArtifactStore) -> None:
    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(lambda i: store.create_exclusive("locks/race", b"%d" % i), range(8)))
    assert won.count(True) == 1
    assert store.get_bytes("locks/race") == b"%d" % won.index(True)


def test_missing_key_names_uri(store: ArtifactStore, tmp_path: Path) -> None:
    uri = store.uri("no/such/key.txt")
    with pytest.raises(ArtifactNotFoundError) as excinfo:
        store.get_bytes("no/such/key.txt")
    assert uri in str(excinfo.value)
    with pytest.raises(ArtifactNotFoundError) as excinfo:
        store.get_file("no/such/key.txt", tmp_path / "dl" / "key.txt")
    assert uri in str(excinfo.value)
    assert isinstance(excinfo.value, FileNotFoundError)  # plain-Python callers can catch it
    if (tmp_path / "dl").exists():  # S3Store makes the folder before it knows; leaves no temp
        assert list((tmp_path / "dl").iterdir()) == []


def test_pickle_after_use(store: ArtifactStore) -> None:
    store.put_bytes("p.txt", b"pickled")
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    assert clone.get_bytes("p.txt") == b"pickled"


def test_describe_is_secret_free(store: ArtifactStore) -> None:
    store.put_bytes("d.txt", b"x")
    described = store.describe()
    text = json.dumps(described)
    assert "testing" not in text
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN"):
        value = os.environ.get(name)
        assert not value or value not in text
    if isinstance(store, S3Store):
        assert described == {"kind": "s3", "bucket": store.bucket, "prefix": "scythe"}
    else:
        assert described["kind"] == "local"


def test_local_store_rejects_escaping_key(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    with pytest.raises(StoreError):
        store.put_bytes("../outside.txt", b"x")
    with pytest.raises(StoreError):
        store.get_bytes("a/../../outside.txt")
    assert not (tmp_path / "outside.txt").exists()


# --------------------------------------------------------------------------------------------
# S3-only behaviour
# --------------------------------------------------------------------------------------------


def test_s3_store_is_lazy_and_picklable_before_use(s3_bucket: str) -> None:
    clients_before = dict(s3_module._clients)
    store = S3Store(bucket=s3_bucket, prefix="/scythe/")
    assert s3_module._clients == clients_before  # building a store makes no client
    assert store.prefix == "scythe"
    assert pickle.loads(pickle.dumps(store)) == store


def test_s3_store_rejects_dot_segments(s3_store: S3Store) -> None:
    with pytest.raises(StoreError):
        s3_store.put_bytes("a/../b", b"x")
    with pytest.raises(StoreError):
        s3_store.put_bytes("", b"x")


def test_s3_store_without_prefix(s3_bucket: str) -> None:
    store = S3Store(bucket=s3_bucket, prefix="")
    assert store.put_bytes("top/a.txt", b"x") == f"s3://{s3_bucket}/top/a.txt"
    assert store.key_of(f"s3://{s3_bucket}/top/a.txt") == "top/a.txt"
    assert store.list_dirs("") == ["top"]


def test_s3_missing_bucket_is_store_error(s3_endpoint: str) -> None:
    store = S3Store(bucket="scythe-no-such-bucket", prefix="p")
    with pytest.raises(StoreError) as excinfo:
        store.put_bytes("a.txt", b"x")
    assert not isinstance(excinfo.value, ArtifactNotFoundError)
    assert "NoSuchBucket" in str(excinfo.value)
    assert "s3://scythe-no-such-bucket/p/a.txt" in str(excinfo.value)
    assert "testing" not in str(excinfo.value)
    assert excinfo.value.__cause__ is not None


def test_s3_listing_paginates(s3_store: S3Store) -> None:
    # 1000 is the ListObjectsV2 page size: 1005 dirs need two pages of keys and of prefixes.
    keys = [f"many/d{i:04d}/x" for i in range(1005)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3_store.put_bytes(k, b""), keys))
    assert list(s3_store.list_keys("many")) == keys
    assert s3_store.list_dirs("many") == [f"d{i:04d}" for i in range(1005)]


def test_s3_objects_land_under_prefix(s3_store: S3Store, s3_endpoint: str) -> None:
    s3_store.put_bytes("exp/a.txt", b"x")
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=s3_store.bucket)
    assert [o["Key"] for o in listed["Contents"]] == ["scythe/exp/a.txt"]


# --------------------------------------------------------------------------------------------
# FileCache
# --------------------------------------------------------------------------------------------


def test_cache_default_root_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCYTHE_CACHE_DIR", str(tmp_path / "c"))
    assert FileCache().root == tmp_path / "c"
    monkeypatch.delenv("SCYTHE_CACHE_DIR")
    assert FileCache().root == Path.home() / ".cache" / "scythe-oo" / "files"


def test_cache_file_uri_passthrough(tmp_path: Path) -> None:
    cache = FileCache(root=tmp_path / "cache")
    src = tmp_path / "weather file.epw"
    src.write_text("data")
    assert cache.fetch(src.as_uri()) == src
    assert not (tmp_path / "cache").exists()  # nothing copied
    missing = (tmp_path / "missing.epw").as_uri()
    with pytest.raises(ArtifactNotFoundError, match=re.escape("missing.epw")):
        cache.fetch(missing)


def _etag(s3_endpoint: str, store: S3Store, key: str) -> str:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    return str(client.head_object(Bucket=store.bucket, Key=f"scythe/{key}")["ETag"])


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_cache_s3_fetch_then_hit(s3_store: S3Store, s3_endpoint: str, tmp_path: Path) -> None:
    cache = FileCache(root=tmp_path / "cache")
    uri = s3_store.put_bytes("inputs/weather.epw", b"weather")
    first = cache.fetch(uri)
    assert first.read_bytes() == b"weather"
    assert first.name == "weather.epw"
    digest = hashlib.sha256(uri.encode()).hexdigest()
    assert first.parent.parent == tmp_path / "cache" / digest[:2] / digest
    assert first == cache.path_for(uri, _etag(s3_endpoint, s3_store, "inputs/weather.epw"))

    # Gone from S3: within revalidate_after the second fetch is served from this process's
    # memory of the check, with no request at all.
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    client.delete_object(Bucket=s3_store.bucket, Key="scythe/inputs/weather.epw")
    assert cache.fetch(uri) == first
    assert first.read_bytes() == b"weather"
    # A process that checks again learns the reference is broken instead of using a stale copy.
    with pytest.raises(ArtifactNotFoundError, match=re.escape(uri)):
        FileCache(root=tmp_path / "cache").fetch(uri)


def test_cache_s3_overwritten_object_is_fetched_again(s3_store: S3Store, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    uri = s3_store.put_bytes("inputs/weather.epw", b"old weather")
    patient = FileCache(root=root)  # default revalidate_after: 60 s
    old = patient.fetch(uri)
    s3_store.put_bytes("inputs/weather.epw", b"new weather")

    assert patient.fetch(uri) == old  # still inside its window
    eager = FileCache(root=root, revalidate_after=0)
    new = eager.fetch(uri)
    assert new != old
    assert new.name == old.name == "weather.epw"
    assert new.read_bytes() == b"new weather"
    # The old copy is left alone: a leaf still reading it must not see its bytes change.
    assert old.read_bytes() == b"old weather"
    assert _files(root) == sorted([old, new])
    # Unchanged since: checking again downloads nothing new.
    assert eager.fetch(uri) == new
    assert _files(root) == sorted([old, new])


def test_cache_s3_object_overwritten_mid_fetch(
    s3_store: S3Store, s3_endpoint: str, tmp_path: Path
) -> None:
    """A write between the HEAD and the GET must not file new bytes under the old ETag."""
    uri = s3_store.put_bytes("inputs/weather.epw", b"old")
    old_etag = _etag(s3_endpoint, s3_store, "inputs/weather.epw")
    writer = boto3.client("s3", endpoint_url=s3_endpoint)
    writes: list[str] = []

    def overwrite_once(**_: Any) -> None:
        if not writes:
            writes.append("done")
            writer.put_object(Bucket=s3_store.bucket, Key="scythe/inputs/weather.epw", Body=b"new")

    events = s3_module.s3_client().meta.events
    events.register("before-call.s3.GetObject", overwrite_once)
    try:
        path = FileCache(root=tmp_path / "cache").fetch(uri)
    finally:
        events.unregister("before-call.s3.GetObject", overwrite_once)
    assert writes == ["done"]
    assert path.read_bytes() == b"new"
    assert path == FileCache(root=tmp_path / "cache").path_for(
        uri, _etag(s3_endpoint, s3_store, "inputs/weather.epw")
    )
    assert not FileCache(root=tmp_path / "cache").path_for(uri, old_etag).exists()
    assert _files(tmp_path / "cache") == [path]


def test_cache_s3_missing_object(s3_store: S3Store, tmp_path: Path) -> None:
    cache = FileCache(root=tmp_path / "cache")
    uri = s3_store.uri("inputs/absent.epw")
    with pytest.raises(ArtifactNotFoundError, match=re.escape(uri)):
        cache.fetch(uri)
    assert _files(tmp_path / "cache") == []


def test_cache_same_basename_no_collision(s3_store: S3Store, tmp_path: Path) -> None:
    cache = FileCache(root=tmp_path / "cache")
    uri_a = s3_store.put_bytes("a/weather.epw", b"A")
    uri_b = s3_store.put_bytes("b/weather.epw", b"B")
    path_a, path_b = cache.fetch(uri_a), cache.fetch(uri_b)
    assert path_a != path_b
    assert path_a.name == path_b.name == "weather.epw"
    assert (path_a.read_bytes(), path_b.read_bytes()) == (b"A", b"B")


def _fetch_in_child(root: str, uri: str, barrier: Any, results: Any) -> None:
    barrier.wait(timeout=30)
    path = FileCache(root=Path(root)).fetch(uri)
    results.put((str(path), hashlib.sha256(path.read_bytes()).hexdigest()))


def test_cache_concurrent_fetch_from_processes(
    s3_store: S3Store, s3_endpoint: str, tmp_path: Path
) -> None:
    payload = os.urandom(12 * 1024 * 1024)  # a slow download, so the four really overlap
    uri = s3_store.put_bytes("inputs/big.bin", payload)
    # fork: children inherit the moto environment and the parent's (pid-keyed) client cache.
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    root = tmp_path / "cache"
    procs = [
        ctx.Process(target=_fetch_in_child, args=(str(root), uri, barrier, results))
        for _ in range(4)
    ]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    etag = _etag(s3_endpoint, s3_store, "inputs/big.bin")
    expected = (str(FileCache(root=root).path_for(uri, etag)), hashlib.sha256(payload).hexdigest())
    assert got == [expected] * 4
    assert _files(root) == [Path(expected[0])]


class _Server:
    """A tiny scripted HTTP server.

    Each path answers with its queued statuses (GET and HEAD alike), then 200 with its body and
    the validator headers set for it. ``calls`` counts requests by (method, path).
    """

    def __init__(self) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.script: dict[str, list[int]] = {}
        self.bodies: dict[str, bytes] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.head_status: int | None = None  # e.g. 405: a server that refuses HEAD
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, send_body: bool) -> None:
                server.calls[(self.command, self.path)] += 1
                queued = server.script.get(self.path, [])
                status = queued.pop(0) if queued else 200
                if not send_body and server.head_status is not None:
                    status = server.head_status
                body = server.bodies.get(self.path, b"") if status == 200 else b"nope"
                if self.path not in server.bodies:
                    status, body = 404, b"not found"
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                if status == 200:
                    for name, value in server.headers.get(self.path, {}).items():
                        self.send_header(name, value)
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def do_GET(self) -> None:
                self._answer(send_body=True)

            def do_HEAD(self) -> None:
                self._answer(send_body=False)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()


@pytest.fixture
def http_server() -> Iterator[_Server]:
    server = _Server()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()


def test_cache_http_retries_transient_errors(http_server: _Server, tmp_path: Path) -> None:
    path_ = "/files/weather.epw"
    http_server.bodies[path_] = b"epw-data"
    http_server.script[path_] = [503, 503]
    cache = FileCache(root=tmp_path / "cache", http_backoff=0.01)
    uri = f"{http_server.url}{path_}"
    path = cache.fetch(uri)
    assert path.read_bytes() == b"epw-data"
    assert (http_server.calls[("HEAD", path_)], http_server.calls[("GET", path_)]) == (3, 1)
    assert cache.fetch(uri) == path  # checked moments ago: no request at all
    assert sum(http_server.calls.values()) == 4
    assert _files(tmp_path / "cache") == [path]


def test_cache_http_gives_up_after_bounded_attempts(http_server: _Server, tmp_path: Path) -> None:
    http_server.bodies["/flaky"] = b"x"
    http_server.script["/flaky"] = [429, 500, 502]
    cache = FileCache(root=tmp_path / "cache", http_backoff=0.01, http_attempts=3)
    with pytest.raises(StoreError, match=re.escape(f"{http_server.url}/flaky")):
        cache.fetch(f"{http_server.url}/flaky")
    assert sum(http_server.calls.values()) == 3


def test_cache_http_404_fails_at_once(http_server: _Server, tmp_path: Path) -> None:
    cache = FileCache(root=tmp_path / "cache", http_backoff=0.01)
    url = f"{http_server.url}/missing/weather.epw"
    with pytest.raises(ArtifactNotFoundError) as excinfo:
        cache.fetch(url)
    assert url in str(excinfo.value)
    assert "404" in str(excinfo.value)
    assert sum(http_server.calls.values()) == 1
    assert _files(tmp_path / "cache") == []


def test_cache_http_changed_etag_is_fetched_again(http_server: _Server, tmp_path: Path) -> None:
    url = f"{http_server.url}/weather.epw"
    http_server.bodies["/weather.epw"] = b"v1"
    http_server.headers["/weather.epw"] = {"ETag": '"v1"'}
    cache = FileCache(root=tmp_path / "cache", revalidate_after=0)
    old = cache.fetch(url)
    assert cache.fetch(url) == old  # same ETag: a HEAD, no second GET
    assert http_server.calls[("GET", "/weather.epw")] == 1

    http_server.bodies["/weather.epw"] = b"v2!"
    http_server.headers["/weather.epw"] = {"ETag": '"v2"'}
    new = cache.fetch(url)
    assert new != old
    assert (old.read_bytes(), new.read_bytes()) == (b"v1", b"v2!")
    assert http_server.calls[("GET", "/weather.epw")] == 2
    assert _files(tmp_path / "cache") == sorted([old, new])


def test_cache_http_without_head_or_version(http_server: _Server, tmp_path: Path) -> None:
    """Servers that refuse HEAD are asked with GET; versionless bytes are trusted as immutable."""
    http_server.head_status = 405
    http_server.bodies["/a.csv"] = b"a"
    http_server.headers["/a.csv"] = {"Last-Modified": "Mon, 23 Nov 2026 10:00:00 GMT"}
    http_server.bodies["/b.csv"] = b"b"  # no ETag, no Last-Modified
    cache = FileCache(root=tmp_path / "cache", revalidate_after=0)
    a_url, b_url = f"{http_server.url}/a.csv", f"{http_server.url}/b.csv"
    first_a, first_b = cache.fetch(a_url), cache.fetch(b_url)
    inode = first_a.stat().st_ino
    assert (cache.fetch(a_url), cache.fetch(b_url)) == (first_a, first_b)
    assert first_a.stat().st_ino == inode  # not rewritten
    assert (first_a.read_bytes(), first_b.read_bytes()) == (b"a", b"b")
    # /a.csv is asked with GET each time, but its version is cached, so its body is not copied.
    assert http_server.calls[("GET", "/a.csv")] == 2
    # /b.csv has no version: HEAD is refused and None maps to the one unversioned copy.
    assert http_server.calls[("GET", "/b.csv")] == 1
    assert _files(tmp_path / "cache") == sorted([first_a, first_b])


def test_cache_rejects_unknown_scheme(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=re.escape("ftp://")):
        FileCache(root=tmp_path).fetch("ftp://example.com/a.txt")


# --------------------------------------------------------------------------------------------
# Staged leftovers: what a writer killed mid-write leaves behind
# --------------------------------------------------------------------------------------------


def test_local_store_sweeps_only_old_leftovers_under_the_prefix(tmp_path: Path) -> None:
    store = LocalStore(root=tmp_path / "store")
    store.put_bytes("run/a/table.pq", b"kept")
    store.put_bytes("other/x.txt", b"kept")
    old = store.path_of("run/a/.table.pq.k1.tmp")
    fresh = store.path_of("run/.b.txt.k2.tmp")
    outside = store.path_of("other/.x.txt.k3.tmp")
    for path in (old, fresh, outside):
        path.write_bytes(b"half")
    os.utime(old, (1, 1))
    os.utime(outside, (1, 1))
    assert store.sweep_staged("run", older_than=600) == 1
    assert not old.exists() and fresh.exists() and outside.exists()
    assert store.get_bytes("run/a/table.pq") == b"kept"
    assert store.sweep_staged("missing/prefix", older_than=0) == 0


def test_s3_store_aborts_incomplete_uploads_under_the_prefix(
    s3_store: S3Store, s3_endpoint: str
) -> None:
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = s3_store.bucket
    inside = client.create_multipart_upload(Bucket=bucket, Key="scythe/run/final/scalars.pq")
    outside = client.create_multipart_upload(Bucket=bucket, Key="scythe/runner/x.pq")
    s3_store.put_bytes("run/specs.pq", b"kept")

    def open_uploads() -> set[str]:
        listed = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return {u["UploadId"] for u in listed}

    # moto reports every upload as begun in 2010, so the age test is LocalStore's to show.
    assert s3_store.sweep_staged("run", older_than=0) == 1
    assert open_uploads() == {outside["UploadId"]}
    assert inside["UploadId"] not in open_uploads()
    assert s3_store.get_bytes("run/specs.pq") == b"kept"


def _put_and_get_in_child(store: S3Store, key: str, loader_id: int) -> tuple[bytes, bool]:
    store.put_bytes(key, key.encode())
    return store.get_bytes(key), id(s3_module._models) == loader_id


def test_preloaded_models_serve_forked_processes(s3_store: S3Store) -> None:
    """A distributed worker preloads the S3 backend before forking its leaf processes: the
    children keep the parent's loaded models (not its sessions or sockets), and their
    clients, and the parent's own, work side by side."""
    s3_store.put_bytes("before-fork", b"parent")  # the parent holds a client and a session
    clients_before = dict(s3_module._clients)
    s3_module.preload()
    assert s3_module._clients == clients_before  # the preloaded client is not kept
    loader_id = id(s3_module._models)
    context = multiprocessing.get_context("fork")
    with context.Pool(3) as pool:
        got = pool.starmap(
            _put_and_get_in_child, [(s3_store, f"child-{i}", loader_id) for i in range(6)]
        )
    assert got == [(f"child-{i}".encode(), True) for i in range(6)]
    assert s3_store.get_bytes("before-fork") == b"parent"
    assert [s3_store.get_bytes(f"child-{i}") for i in range(6)] == [
        f"child-{i}".encode() for i in range(6)
    ]
