"""Parquet through a store: the few helpers every table writer and reader shares."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.store.base import ArtifactStore


def write_table(store: ArtifactStore, key: str, table: pa.Table) -> str:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    return store.put_bytes(key, buffer.getvalue())


def read_table(store: ArtifactStore, key: str) -> pa.Table:
    return pq.read_table(pa.BufferReader(store.get_bytes(key)))
