"""Pytest plugin: a real Hatchet engine (scripts/hatchet-local) and workers as subprocesses.

The engine is found through HATCHET_CLIENT_TOKEN in the environment or a running
``scripts/hatchet-local``. Without one, Hatchet tests are skipped, unless
SCYTHE_REQUIRE_HATCHET=1 (as CI sets it), where a missing engine is an error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _engine_env() -> dict[str, str] | None:
    if os.environ.get("HATCHET_CLIENT_TOKEN"):
        return {k: v for k, v in os.environ.items() if k.startswith("HATCHET_CLIENT_")}
    script = ROOT / "scripts" / "hatchet-local"
    result = subprocess.run(
        ["bash", str(script), "env"], capture_output=True, text=True, timeout=60, check=False
    )
    if result.returncode != 0:
        return None
    env: dict[str, str] = {}
    for line in result.stdout.splitlines():
        if line.startswith("export ") and "=" in line:
            name, _, value = line[len("export ") :].partition("=")
            env[name] = value.strip().strip("'\"")
    return env if env.get("HATCHET_CLIENT_TOKEN") else None


@pytest.fixture(scope="session")
def hatchet_env() -> Iterator[dict[str, str]]:
    """Client settings of the real engine, exported into this process for the session."""
    env = _engine_env()
    if env is None:
        message = (
            "no Hatchet engine: start one with `scripts/hatchet-local up` "
            "(or set HATCHET_CLIENT_TOKEN)"
        )
        if os.environ.get("SCYTHE_REQUIRE_HATCHET") == "1":
            pytest.fail(f"SCYTHE_REQUIRE_HATCHET=1 but {message}", pytrace=False)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:  # session-wide; undone at the end
        for name, value in env.items():
            patch.setenv(name, value)
        yield env


@pytest.fixture
def hatchet_namespace(hatchet_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A namespace per test, so runs and workers of different tests never meet."""
    namespace = f"t{uuid.uuid4().hex[:10]}_"
    monkeypatch.setenv("HATCHET_CLIENT_NAMESPACE", namespace)
    return namespace


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WorkerProcess:
    """A worker command in its own process group, with its own environment settings.

    ``start`` returns once the worker's health endpoint answers, so a test never races a
    worker that has not registered its tasks yet.
    """

    def __init__(self, name: str, command: list[str], settings: dict[str, str], log: Path) -> None:
        self.name = name
        self.command = command
        self.settings = settings
        self.log_path = log
        self.health_port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout: float = 60.0) -> WorkerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SCYTHE_WORKER_NAME": self.name,
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_ENABLED": "True",
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_PORT": str(self.health_port),
            "HATCHET_CLIENT_WORKER_HEALTHCHECK_BIND_ADDRESS": "127.0.0.1",
            **self.settings,
        }
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_tail()}")
            try:
                url = f"http://127.0.0.1:{self.health_port}/health"
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        tail = self.log_tail()
        self.stop()  # leave no worker behind a failed start
        raise RuntimeError(f"worker {self.name} never became healthy: {tail}")

    def kill(self) -> None:
        """SIGKILL the whole worker process group: no cleanup, like a lost spot instance."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"


WORKER_MODULES = ("tests.support.hatchet_experiments", "examples.building_energy")
"""What a test worker serves unless a test says otherwise."""


@pytest.fixture
def start_worker(hatchet_namespace: str, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers for this test; every one is stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(
        name: str,
        modules: tuple[str, ...] = (
            "tests.support.hatchet_experiments",
            "examples.building_energy",
        ),
        **settings: str,
    ) -> WorkerProcess:
        env = {f"SCYTHE_WORKER_{k.upper()}": v for k, v in settings.items()}
        command = [sys.executable, "-m", "scythe_oo.cli", "worker", *modules]
        worker = WorkerProcess(name, command, env, tmp_path / f"{name}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
