"""Preparing specs: the one pass that checks and encodes everything before a folder exists.

Each chunk of specs is validated, its local input files are snapshotted, its computed
features checked, and the whole chunk encoded exactly as specs.pq will hold it, so that any
value Parquet or JSON cannot store is found now. One SpecValidationError names every problem
(position and field) and nothing is written; otherwise the encoded specs wait in a local spool
for the run folder. On a machine with cores to spare, forked helpers do the checking while
the caller's generator builds the next specs (``checking``).
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import attrs

from scythe_oo.definition.base import AnyExperiment
from scythe_oo.definition.cpus import usable_cpus
from scythe_oo.definition.errors import SpecValidationError
from scythe_oo.definition.settings import Settings
from scythe_oo.driver.checking import ChunkCheck, Group, HelperPool, group_size
from scythe_oo.driver.input_files import LocalFiles
from scythe_oo.driver.sources import Chunk
from scythe_oo.driver.spool import SpecSpool
from scythe_oo.driver.validate import Features, Problems
from scythe_oo.tree.gcpause import no_full_collections


@attrs.frozen
class PreparedSpecs:
    """Specs checked and encoded, waiting for their run folder."""

    spool: SpecSpool
    files: LocalFiles
    count: int


GROUP_ROWS = 16_384
"""Specs sent to a helper at once: checking them takes 0.15-0.2 s (ten fields each), against a
few milliseconds for the round trip."""

HELPERS_AFTER = 8
"""Groups checked in the caller's process before helpers start. Starting them costs the caller
more than it saves on a sweep of 10^5 specs (forking a process of a few hundred MiB, then
copying each page it writes). Past it, what they save depends on the model: for a plain one,
whose check costs less than building it, the caller's generator is the limit (10^6 such
specs on 2 vCPUs: 7.2-8.4 s with none, 7.3-8.9 s with one or two; ``benchmarks/prepare.py``);
for one whose validators cost more than the generator, they take that cost off the caller."""

MAX_HELPERS = 4
"""Helpers by default, however many CPUs: beyond a few, the caller's generator is the limit."""

PATIENCE_SECONDS = 120.0
PATIENCE_FACTOR = 50
"""How long allocate waits for a helper's answer before taking the helpers for stuck: the
larger of PATIENCE_SECONDS and PATIENCE_FACTOR times the slowest group checked in the caller's
own process (a group waits behind at most two per helper)."""


def prepare_specs(
    cls: AnyExperiment,
    chunks: Iterable[Chunk],
    staging: Path,
    *,
    processes: int | None = None,
    group_rows: int = GROUP_ROWS,
    helpers_after: int = HELPERS_AFTER,
    patience: float | None = None,
) -> PreparedSpecs:
    """Check and encode every chunk; raise one SpecValidationError for every problem.

    ``processes`` forked helpers share the checking (default: SCYTHE_PREPARE_PROCESSES, else
    one per CPU up to MAX_HELPERS) where it is safe (see ``_helpers``), from the group after
    the first ``helpers_after`` groups of ``group_rows`` specs on. A helper that does not
    answer for ``patience`` seconds (default: see PATIENCE_SECONDS) stops allocate with an
    error that says why, rather than leaving it waiting for good.

    The caller's generator runs inside, with full collections held off
    (``tree.gcpause.no_full_collections``): they cost more than a quarter of this pass.
    """
    with no_full_collections():
        return _prepare(cls, chunks, staging, processes, group_rows, helpers_after, patience)


def _prepare(
    cls: AnyExperiment,
    chunks: Iterable[Chunk],
    staging: Path,
    processes: int | None,
    group_rows: int,
    helpers_after: int,
    patience: float | None,
) -> PreparedSpecs:
    problems = Problems(cls)
    files = LocalFiles(cls, staging / "files")
    features = Features(cls)
    spool = SpecSpool(cls.schema, staging)
    check = ChunkCheck(cls, features, files if cls.schema.file_inputs else None)
    helpers = _helpers(cls, features, processes)
    # One process holds one chunk of the caller's objects at a time; with helpers, a group.
    groups = _groups(chunks, group_rows if helpers else 1)
    position, slowest = 0, 0.0
    for first, group in itertools.islice(groups, helpers_after if helpers else None):
        started = time.perf_counter()
        check(group, first, problems, problems, spool.add)
        slowest = max(slowest, time.perf_counter() - started)
        position = first + group_size(group)
    rest = next(groups, None) if helpers else None
    if rest is not None:
        pending = itertools.chain([rest], groups)
        del rest
        if patience is None:
            patience = max(PATIENCE_SECONDS, PATIENCE_FACTOR * slowest)
        with HelperPool(check, helpers, patience) as pool:
            for first, group in pending:
                pool.submit(group, first)
                position = first + group_size(group)
                del group  # it travels pickled: hold one group of objects, not several
                for result in pool.results(wait=False):
                    result.merge(problems, spool.add)
            for result in pool.results(wait=True):
                result.merge(problems, spool.add)
    if position == 0:
        raise SpecValidationError(
            f"{cls.name}.allocate got zero specs; pass at least one "
            f"{cls.schema.input_type.__name__}."
        )
    if not problems:
        spool.finish(problems)
    problems.raise_any()
    return PreparedSpecs(spool, files, position)


def _helpers(cls: AnyExperiment, features: Features, processes: int | None) -> int:
    """How many forked helpers check specs: none without fork (Linux only: elsewhere fork is
    unsafe or missing), and none where checks span chunks (input files are numbered across
    the sweep; computed features must agree across it).

    By default, none either while the caller runs other threads: a fork copies every lock as
    it is at that moment, and one held by another thread (a gRPC client's, a notebook
    kernel's, a BLAS pool's) stays held in the helper for good, which would hang allocate.
    A number set by the caller or SCYTHE_PREPARE_PROCESSES is taken as given."""
    if processes is None:
        processes = Settings.from_env().prepare_processes
    if processes is None:
        alone = threading.active_count() == 1
        cpus = usable_cpus()
        processes = min(cpus, MAX_HELPERS) if cpus >= 2 and alone else 0
    if not sys.platform.startswith("linux") or cls.schema.file_inputs or not features.constant:
        return 0
    return max(0, processes)


def _groups(chunks: Iterable[Chunk], rows: int) -> Iterator[tuple[int, Group]]:
    """Consecutive chunks gathered into groups of at least ``rows`` specs, with the position
    of each group's first spec."""
    group: Group = []
    first = size = 0
    for chunk in chunks:
        group.append(chunk)
        size += len(chunk)
        if size >= rows:
            yield first, group
            first, group, size = first + size, [], 0
    if group:
        yield first, group
