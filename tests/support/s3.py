"""Pytest plugin: a real moto S3 server over HTTP, so S3 code is tested through botocore's full
request path (signing, retries, pagination, error parsing) rather than through patched clients.

The server is a subprocess, not an in-process thread, so a test can stop and restart it
(``moto_server.stop()`` / ``moto_server.start()``) to exercise outage handling.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import boto3
import pytest

from scythe_oo import ArtifactStore, LocalStore, S3Store

_STARTUP_TIMEOUT = 30.0

# Cleared for the session so a developer's own AWS setup cannot leak into (or receive writes
# from) the tests.
_CLEARED_ENV = (
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_REGION",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MotoServer:
    """A ``python -m moto.server`` subprocess on a fixed 127.0.0.1 port.

    The port stays the same across stop/start so clients configured with the endpoint keep
    working after a restart (moto keeps its data in memory, so a restart empties it).
    """

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        self._log = self._log_path.open("ab")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"moto server exited with {self._proc.returncode}; "
                    f"see {self._log_path}:\n{self._log_path.read_text(errors='replace')}"
                )
            try:
                with urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto server did not answer on {self.endpoint} within 30 s")

    def stop(self) -> None:
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    """The running moto subprocess, for tests that need to stop or restart it."""
    server = MotoServer(tmp_path_factory.mktemp("moto") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The moto endpoint URL, with the process environment pointing boto3 at it."""
    missing = str(tmp_path_factory.mktemp("aws") / "absent")
    wanted = {
        "AWS_ENDPOINT_URL": moto_server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # No ~/.aws files: a developer's config could otherwise redirect or sign requests.
        "AWS_CONFIG_FILE": missing,
        "AWS_SHARED_CREDENTIALS_FILE": missing,
    }
    with pytest.MonkeyPatch.context() as patch:  # session-wide; undone at the end
        for name in _CLEARED_ENV:
            patch.delenv(name, raising=False)
        for name, value in wanted.items():
            patch.setenv(name, value)
        yield moto_server.endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str) -> str:
    """A new, empty bucket, so tests never see each other's objects."""
    name = f"scythe-test-{uuid.uuid4().hex[:16]}"
    boto3.client("s3", endpoint_url=s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3_store(s3_bucket: str) -> S3Store:
    return S3Store(bucket=s3_bucket, prefix="scythe")


@pytest.fixture(params=["local", "s3"])
def local_or_s3_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """Each store kind in turn, for code that must behave the same on both."""
    if request.param == "local":
        return LocalStore(root=tmp_path / "store")
    s3_store: S3Store = request.getfixturevalue("s3_store")
    return s3_store
