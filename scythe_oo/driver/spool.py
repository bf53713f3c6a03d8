"""The spool: encoded specs on local disk, between checking them and writing specs.pq.

Specs arrive as a stream that may not fit in memory and may not be readable twice (a
generator). They must all be checked before the run folder is claimed, and written into it
after. So the first pass encodes each chunk as it is checked and keeps it, in memory up to
MEMORY_BYTES of encoded chunks (a sweep of 10^5 specs, say, never touches the disk) and in a
staging folder beyond; the second pass, once the folder exists, streams the spool into
specs.pq, splicing in the run's ids and the uploaded files' URIs. Neither pass holds more than
one chunk of pydantic objects, nor more than MEMORY_BYTES of encoded ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from scythe_oo.definition.schema import ExperimentSchema
from scythe_oo.driver.validate import Problems
from scythe_oo.runfolder import specs as specs_format
from scythe_oo.runfolder.specs import specs_table
from scythe_oo.runfolder.tables import conform, parquet_sink, write_parquet
from scythe_oo.storage.base import ArtifactStore

MEMORY_BYTES = 64 * 2**20
"""Encoded chunks the spool keeps in memory before it writes the rest to disk."""


class SpecSpool:
    """Encoded chunks of specs, gathered into files of about SPECS_CHUNK_ROWS rows."""

    def __init__(self, schema: ExperimentSchema, directory: Path) -> None:
        self.schema = schema
        self.directory = directory
        self.count = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._files: list[tuple[Path | pa.Table, int]] = []  # (chunk, position of its first spec)
        self._schema: pa.Schema | None = None
        self._in_memory = 0

    def add(self, encoded: pa.Table) -> None:
        self._pending.append(encoded)
        self._pending_rows += encoded.num_rows
        self.count += encoded.num_rows
        if self._pending_rows >= specs_format.SPECS_CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        """Turn what is pending into one chunk: in memory while the spool's share of memory
        allows (it costs no more there than it already does), else on disk."""
        if not self._pending:
            return
        table = pa.concat_tables(self._pending, promote_options="permissive")
        first = self.count - self._pending_rows
        if self._in_memory + table.nbytes <= MEMORY_BYTES:
            self._in_memory += table.nbytes
            self._files.append((table, first))
        else:
            path = self.directory / f"spool-{len(self._files):06d}.pq"
            write_parquet(table, path)
            self._files.append((path, first))
        self._pending, self._pending_rows = [], 0

    def finish(self, problems: Problems) -> None:
        """Write what is pending and settle one schema for every chunk; computed features are
        typed by their values, and chunks whose types cannot be unified are a problem."""
        self._flush()
        schemas = [
            chunk.schema if isinstance(chunk, pa.Table) else pq.read_schema(chunk)
            for chunk, _ in self._files
        ]
        if not schemas:
            return
        try:
            self._schema = pa.unify_schemas(schemas, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            first = schemas[0]
            for (_, start), schema in zip(self._files, schemas, strict=True):
                for field in schema:
                    if field.name in first.names and first.field(field.name).type != field.type:
                        problems.add(
                            f"computed feature {field.name!r}: its values are "
                            f"{first.field(field.name).type} for the first specs but "
                            f"{field.type} from spec #{start} on; return one type ({exc})."
                        )
                        return
            problems.add(f"the specs' columns cannot be given one type: {exc}")

    def write(
        self,
        store: ArtifactStore,
        key: str,
        experiment_id: str,
        run_id: str,
        uploaded: dict[str, str],
    ) -> None:
        """Stream the spool into specs.pq at ``key``, a chunk at a time."""
        tables = self._tables(experiment_id, run_id, uploaded)
        first = next(tables)
        with parquet_sink(store, key, first.schema) as writer:
            writer.write_table(first)
            for table in tables:
                writer.write_table(conform(table, first.schema))

    def _tables(
        self, experiment_id: str, run_id: str, uploaded: dict[str, str]
    ) -> Iterator[pa.Table]:
        assert self._schema is not None, "finish() the spool first"
        for chunk, start in self._files:
            table = chunk if isinstance(chunk, pa.Table) else pq.read_table(chunk)
            encoded = conform(table, self._schema)
            yield specs_table(self.schema, encoded, start, experiment_id, run_id, uploaded)
