"""Preparing specs: the one pass that checks and encodes everything before a folder exists.

Each chunk of specs is validated, its local input files are snapshotted, its computed
features checked, and the whole chunk encoded exactly as specs.pq will hold it, so that any
value Parquet or JSON cannot store is found now. One SpecValidationError names every problem
(position and field) and nothing is written; otherwise the encoded specs wait in a local spool
for the run folder.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.driver.input_files import LocalFiles
from scythe_oo.driver.spool import SpecSpool
from scythe_oo.driver.validate import Features, Problems, validate_chunk
from scythe_oo.runfolder.specs import UnstorableValues, encode_chunk
from scythe_oo.tree.gcpause import paused_gc


@attrs.frozen
class PreparedSpecs:
    """Specs checked and encoded, waiting for their run folder."""

    spool: SpecSpool
    files: LocalFiles
    count: int


def prepare_specs(cls: AnyExperiment, chunks: Iterable[list[Any]], staging: Path) -> PreparedSpecs:
    """Check and encode every chunk; raise one SpecValidationError for every problem."""
    problems = Problems(cls)
    files = LocalFiles(cls, staging / "files")
    features = Features(cls)
    spool = SpecSpool(cls.schema, staging)
    position = 0
    for chunk in chunks:
        with paused_gc():  # building thousands of small objects; none of them form cycles
            specs = validate_chunk(cls, chunk, position, problems)
            if specs and not problems:  # once anything is wrong, only validation goes on
                _encode(cls, specs, position, features, files, spool, problems)
        position += len(chunk)
    if position == 0:
        raise SpecValidationError(
            f"{cls.name}.allocate got zero specs; pass at least one "
            f"{cls.schema.input_type.__name__}."
        )
    if not problems:
        spool.finish(problems)
    problems.raise_any()
    return PreparedSpecs(spool, files, position)


def _encode(
    cls: AnyExperiment,
    specs: list[Any],
    first: int,
    features: Features,
    files: LocalFiles,
    spool: SpecSpool,
    problems: Problems,
) -> None:
    names = features.check(specs, first, problems)
    tokens = files.tokenized(specs, first, problems) if cls.schema.file_inputs else None
    if problems:
        return
    try:
        spool.add(encode_chunk(cls.schema, specs, names, first, tokens))
    except UnstorableValues as exc:
        for found in exc.found:
            problems.add(f"spec #{found.position}: field {found.field!r}: {found.reason}")
