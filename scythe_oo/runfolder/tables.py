"""Parquet through a store: the few helpers every table writer and reader shares.

Small tables go through memory (``read_table`` / ``write_table``). Gathered tables can hold
millions of rows, so they are read and written as files instead (``open_parquet`` /
``parquet_sink``): a reader pulls one batch at a time and a writer emits one row group at a
time, and neither ever holds the whole table.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.runfolder.specs import SPEC_COLUMN
from scythe_oo.storage.atomic import atomic_destination
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.local import LocalStore

COMPRESSION = "zstd"
DOWNLOAD_THREADS = 8

DATAFRAME_INDEX_META = b"scythe.index"
"""Schema metadata of a user table: its own index levels, comma-separated."""


def parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """How every table of ours is written: zstd, with dictionary encoding only for text and
    flags. Simulation outputs are mostly unique floats, for which a dictionary never pays: it
    made writing 100,000 rows of 25 float columns five times slower (0.34 s against 0.07 s)
    and the file larger. Nor does it for the specs' JSON, one distinct text per row: reading
    100,000 of them back took 0.25 s with a dictionary and 0.07 s without, for the same size."""
    dictionary = [
        field.name
        for field in schema
        if (
            pa.types.is_string(field.type)
            or pa.types.is_large_string(field.type)
            or pa.types.is_boolean(field.type)
            or pa.types.is_dictionary(field.type)
        )
        and field.name != SPEC_COLUMN
    ]
    return {"compression": COMPRESSION, "use_dictionary": dictionary}


def stream_parquet(path: Path) -> pq.ParquetFile:
    """A Parquet file to read a batch at a time, holding about one row group at once.

    pyarrow's default (``pre_buffer``) reads ahead every row group a batch iterator will
    visit: merging ten children's tables of 10^6 rows each held 1.6 GB, where reading the row
    groups as they come held 57 MB per table. Our files are on local disk by the time they
    are read (remote ones are downloaded first), so read-ahead buys nothing."""
    return pq.ParquetFile(path, pre_buffer=False)


def write_parquet(table: pa.Table, where: Any) -> None:
    """``table`` to a path or a file object, written the way every table of ours is."""
    pq.write_table(table, where, **parquet_options(table.schema))


def parquet_writer(where: Any, schema: pa.Schema) -> pq.ParquetWriter:
    """A row-group-at-a-time writer for ``schema``, written the way every table of ours is."""
    return pq.ParquetWriter(where, schema, **parquet_options(schema))


def write_table(store: ArtifactStore, key: str, table: pa.Table) -> str:
    buffer = io.BytesIO()
    write_parquet(table, buffer)
    return store.put_bytes(key, buffer.getvalue())


def read_table(store: ArtifactStore, key: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(store.get_bytes(key)))


def local_path(store: ArtifactStore, key: str) -> Path | None:
    """The file behind ``key`` when the store keeps it on this machine: read it in place."""
    uri = urlparse(store.uri(key))
    if uri.scheme != "file" or uri.netloc not in ("", "localhost"):
        return None
    return Path(unquote(uri.path))


@contextlib.contextmanager
def open_parquet(store: ArtifactStore, key: str) -> Iterator[pq.ParquetFile]:
    """A Parquet file to read batch by batch: in place when local, else a temporary download."""
    with open_parquets(store, [key]) as (parquet,):
        yield parquet


@contextlib.contextmanager
def open_parquets(store: ArtifactStore, keys: Sequence[str]) -> Iterator[list[pq.ParquetFile]]:
    """Several Parquet files at once; remote ones are downloaded in parallel, a few at a time."""
    paths = [local_path(store, key) for key in keys]
    with contextlib.ExitStack() as stack:
        remote = [i for i, path in enumerate(paths) if path is None]
        if remote:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="scythe-read-")))

            def fetch(i: int) -> Path:
                return store.get_file(keys[i], tmp / f"{i}.pq")

            with ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(remote))) as pool:
                for i, fetched in zip(remote, pool.map(fetch, remote), strict=True):
                    paths[i] = fetched
        files = []
        for key, local in zip(keys, paths, strict=True):
            if local is None or not local.is_file():
                raise ArtifactNotFoundError(f"no object at {store.uri(key)}")
            files.append(stack.enter_context(stream_parquet(local)))
        yield files


@contextlib.contextmanager
def parquet_sink(store: ArtifactStore, key: str, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A writer whose file reaches ``key`` only if the block completes: no partial tables.

    A local store's file is written beside its final name and renamed into place; a remote
    one is written to a temporary file and uploaded.
    """
    # Only our own LocalStore: another store may do more on a write than place the file.
    if isinstance(store, LocalStore):
        with (
            atomic_destination(store.path_of(key)) as tmp,
            parquet_writer(tmp, schema) as writer,
        ):
            yield writer
        return
    with tempfile.TemporaryDirectory(prefix="scythe-write-") as tmpdir:
        path = Path(tmpdir) / "table.pq"
        with parquet_writer(path, schema) as writer:
            yield writer
        store.put_file(key, path)


class StagedParquet:
    """A Parquet file written a row group at a time, whose key is chosen once it is complete.

    A large base node streams each window's table into one of these and decides at the end
    where it belongs: its destination when every window fitted its schema, a part to merge
    when one did not. A local store's file is staged beside ``near`` (the likely key), so the
    usual outcome costs a rename rather than a second write; another store's is staged in a
    temporary folder and uploaded. Until ``commit`` nothing is visible under any key.
    """

    def __init__(self, store: ArtifactStore, near: str, schema: pa.Schema) -> None:
        self.store = store
        self.schema = schema
        self._tmpdir: str | None = None
        if isinstance(store, LocalStore):
            dest = store.path_of(near)
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
            os.close(fd)
            self.path = Path(name)
        else:
            self._tmpdir = tempfile.mkdtemp(prefix="scythe-stage-")
            self.path = Path(self._tmpdir) / "table.pq"
        self._writer: pq.ParquetWriter | None = parquet_writer(self.path, schema)
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            raise ValueError("this staged table is already committed or discarded")
        if table.num_rows:
            self._writer.write_table(table)
            self.rows += table.num_rows

    def commit(self, key: str) -> str:
        """Close the file and place it at ``key``; returns ``key``."""
        self._close()
        try:
            if isinstance(self.store, LocalStore):
                dest = self.store.path_of(key)
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self.path, dest)
            else:
                self.store.put_file(key, self.path)
        finally:
            self.discard()
        return key

    def discard(self) -> None:
        """Drop whatever is staged (a committed file is not touched)."""
        self._close()
        self.path.unlink(missing_ok=True)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def _close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types; a missing column is all nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            column = table.column(field.name)
            columns.append(column if column.type == field.type else column.cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def dataframe_index_levels(schema: pa.Schema) -> list[str]:
    raw = (schema.metadata or {}).get(DATAFRAME_INDEX_META, b"").decode()
    return [n for n in raw.split(",") if n]


def pandas_index_metadata(schema: pa.Schema, levels: Sequence[str]) -> dict[bytes, bytes]:
    """Schema metadata that makes ``levels`` the index when pandas reads the table.

    Derived from a zero-row table, so final tables are written straight from Arrow: the root
    never turns 10^6 rows into pandas objects.
    """
    data = [c for c in schema.names if c not in levels]
    # Without its metadata: pandas would otherwise restore an index the schema already names.
    bare = schema.remove_metadata().empty_table()
    sample = bare.select([*data, *levels]).to_pandas().set_index(list(levels))
    pandas_meta = pa.Schema.from_pandas(sample, preserve_index=True).metadata
    return {**(schema.metadata or {}), **pandas_meta}
