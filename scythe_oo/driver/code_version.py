"""Which version of the researcher's code a run ran: the git commit of the experiment's repo.

A result is only as reproducible as the code behind it, so allocate records the commit (and
whether the work tree had uncommitted changes) of the repository that holds the experiment's
module, and the report shows it. Asking git takes a few milliseconds, so it runs in a thread
while allocate validates the specs.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

GIT_SECONDS = 5.0
"""A repository too slow to answer in this long (a huge monorepo on a network disk) is skipped."""


def code_version_soon(cls: type) -> Callable[[], dict[str, Any] | None]:
    """Start asking git about ``cls``'s repository; the returned function waits for the answer."""
    found: list[dict[str, Any] | None] = [None]

    def ask() -> None:
        found[0] = code_version(source_dir(cls))

    thread = threading.Thread(target=ask, name="scythe-code-version", daemon=True)
    thread.start()

    def result() -> dict[str, Any] | None:
        thread.join(GIT_SECONDS + 1)
        return found[0]

    return result


def source_dir(cls: type) -> Path:
    """The folder of the module that defines ``cls``; the working directory for a notebook."""
    module = sys.modules.get(cls.__module__)
    file = getattr(module, "__file__", None)
    return Path(file).resolve().parent if file else Path.cwd()


def code_version(folder: Path) -> dict[str, Any] | None:
    """``{"commit", "branch", "dirty"}`` of the git work tree holding ``folder``; None when
    there is none (no git, not a repository, git too slow)."""
    try:
        result = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain=v2", "--branch", "-uno"],
            capture_output=True,
            text=True,
            timeout=GIT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    headers = {}
    dirty = False
    for line in result.stdout.splitlines():
        if line.startswith("# "):
            key, _, value = line[2:].partition(" ")
            headers[key] = value
        elif line:
            dirty = True
    commit = headers.get("branch.oid", "")
    if not commit or commit == "(initial)":
        return None
    return {"commit": commit, "branch": headers.get("branch.head", ""), "dirty": dirty}
