"""A leaf's user tables (``output.dataframes``): checked in the leaf, then written.

Gathering must never be the first place where a leaf's data is judged: a gather that fails
loses a whole subtree, where a leaf that fails loses one row. So every rule the gather relies
on is checked here, and a table that breaks one fails its own leaf, with a message naming the
spec, the table, the column and the fix:

- the name is a plain identifier of at most 64 characters, not one final/ already uses;
- no column or index level is named like a level of the spec index the table will carry;
- each column keeps one type across the run. The first leaf to return a column with values
  fixes its type (recorded in the run folder); a later leaf whose column does not convert to
  it (ints and floats mix, a column of nulls fits any type) fails.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa

from scythe_oo.definition.errors import OutputValidationError
from scythe_oo.definition.schema import RESERVED_TABLE_NAMES
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.runfolder.tables import DATAFRAME_INDEX_META, write_parquet
from scythe_oo.storage.base import ArtifactStore

TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

ColumnTypes = dict[tuple[str, str, str], tuple[pa.DataType, int]]
"""(run, table, column) -> (the column's type, the leaf that fixed it), known to a process."""

_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError)


def write_user_tables(
    frames: Mapping[str, Any],
    *,
    store: ArtifactStore,
    layout: RunLayout,
    leaf: str,
    sort_index: int,
    index_levels: Iterable[str],
    known: ColumnTypes,
) -> dict[str, str]:
    """Check every table, then write each; the store key of each table, by name."""
    levels = set(index_levels)
    tables = {name: _to_arrow(name, frame, sort_index, levels) for name, frame in frames.items()}
    for name, table in tables.items():
        _check_types(store, layout, name, table.schema, sort_index, known)
    keys: dict[str, str] = {}
    for name, table in tables.items():
        buffer = io.BytesIO()
        write_parquet(table, buffer)
        key = layout.leaf_dataframe(name, leaf)
        store.put_bytes(key, buffer.getvalue())
        keys[name] = key
    return keys


def _to_arrow(name: str, frame: Any, sort_index: int, levels: set[str]) -> pa.Table:
    where = f"user table {name!r} of spec #{sort_index}"
    if name in RESERVED_TABLE_NAMES:
        raise OutputValidationError(
            f"{where}: the name is reserved: final/ already holds {sorted(RESERVED_TABLE_NAMES)}."
            " Rename the key in `dataframes`."
        )
    if not isinstance(name, str) or not TABLE_NAME.match(name):
        raise OutputValidationError(
            f"{where}: the name must be a plain identifier of at most 64 characters (letters, "
            "digits, '_'); it names final/<name>.pq. Rename the key in `dataframes`."
        )
    try:
        flat = frame.reset_index()
    except ValueError:  # an index level shares a column's name
        flat = None
    own_index = _index_names(frame)
    columns = [*own_index, *(str(c) for c in frame.columns)]
    duplicated = sorted({c for c in columns if columns.count(c) > 1})
    if duplicated:
        raise OutputValidationError(
            f"{where}: the column and index names {duplicated} appear more than once; give "
            "every column and index level its own name."
        )
    clash = sorted(levels & set(columns))
    if clash:
        raise OutputValidationError(
            f"{where}: the column or index name(s) {clash} are levels of the spec index that "
            "every row of the table gets; rename them in the table."
        )
    assert flat is not None
    flat.columns = columns
    try:
        table = pa.Table.from_pandas(flat, preserve_index=False)
    except _CONVERSION_ERRORS as exc:
        raise OutputValidationError(
            f"{where}: a column cannot be stored as Parquet ({exc}); give each column one type "
            "(numbers, strings, booleans or timestamps)."
        ) from None
    own = {DATAFRAME_INDEX_META: ",".join(own_index).encode()}
    return table.replace_schema_metadata(own)


def _index_names(frame: Any) -> list[str]:
    """The names pandas gives the index levels when it turns them into columns."""
    names = list(frame.index.names)
    if len(names) == 1:
        return [str(names[0]) if names[0] is not None else "index"]
    return [str(name) if name is not None else f"level_{i}" for i, name in enumerate(names)]


def _check_types(
    store: ArtifactStore,
    layout: RunLayout,
    name: str,
    schema: pa.Schema,
    sort_index: int,
    known: ColumnTypes,
) -> None:
    for field in schema:
        if pa.types.is_null(field.type):
            continue  # a column of nulls fits any type and fixes none
        cache = (layout.experiment_id, name, field.name)
        fixed = known.get(cache)
        if fixed is None:
            fixed = _fix_type(store, layout.leaf_table_column(name, field.name), field, sort_index)
            known[cache] = fixed
        established, by_leaf = fixed
        if not _converts(field.type, established):
            raise OutputValidationError(
                f"user table {name!r} of spec #{sort_index}: column {field.name!r} holds "
                f"{field.type} values, but {established} in spec #{by_leaf}, the first leaf "
                "that returned this column; return the same type from every leaf (ints and "
                "floats may mix, and a column of nulls fits any type)."
            )


def _fix_type(
    store: ArtifactStore, key: str, field: pa.Field, sort_index: int
) -> tuple[pa.DataType, int]:
    """The column's type for the whole run: ours if we are first, else the first leaf's."""
    record = {
        "column": field.name,
        "type": str(field.type),
        "leaf": sort_index,
        "schema": base64.b64encode(pa.schema([field]).serialize().to_pybytes()).decode(),
    }
    if store.create_exclusive(key, json.dumps(record).encode()):
        return field.type, sort_index
    stored = json.loads(store.get_bytes(key))
    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(stored["schema"])))
    return schema.field(0).type, int(stored["leaf"])


def _converts(given: pa.DataType, established: pa.DataType) -> bool:
    if given == established:
        return True
    try:
        pa.unify_schemas(
            [pa.schema([("c", established)]), pa.schema([("c", given)])],
            promote_options="permissive",
        )
    except _CONVERSION_ERRORS:
        return False
    return True
