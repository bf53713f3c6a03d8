"""Running the ``scythe-oo`` command in a subprocess, as a researcher's shell would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs

ROOT = Path(__file__).resolve().parents[2]


def cli_env(**extra: str) -> dict[str, str]:
    """The test's environment (real S3 and Hatchet settings included), with the repository
    importable and progress lines frequent."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "SCYTHE_PROGRESS_SECONDS": "0.2", **extra}


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def scythe(*args: str, cwd: Path, timeout: float = 240, **env: str) -> Result:
    """``python -m scythe_oo ARGS`` in ``cwd``; its exit code, stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "scythe_oo", *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def scythe_popen(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    """The command as a process to follow (its own session, so a test can kill it whole)."""
    return subprocess.Popen(
        [sys.executable, "-m", "scythe_oo", *args],
        cwd=cwd,
        env=cli_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
