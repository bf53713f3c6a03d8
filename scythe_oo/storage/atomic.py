"""Atomic writes: a file appears complete under its name, or not at all.

Every writer in the framework (stores, the file cache, Parquet sinks) goes through one helper:
write a temporary sibling, then rename it over the destination. A rename within one folder is
atomic on POSIX, so a reader, a crash or a concurrent writer never sees half a file. Temporary
siblings are named ``.<name>.*.tmp``, which store listings skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_destination(dest: Path) -> Iterator[Path]:
    """A temporary path beside ``dest``; renamed onto ``dest`` if the block completes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_stream(dest: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Stream bytes into ``dest`` (a download, say) without holding them in memory."""
    with atomic_destination(dest) as tmp, tmp.open("wb") as fh:
        write(fh)


def write_bytes(dest: Path, data: bytes) -> None:
    with atomic_destination(dest) as tmp:
        tmp.write_bytes(data)


def copy_file(src: Path, dest: Path) -> None:
    with atomic_destination(dest) as tmp:
        shutil.copyfile(src, tmp)
