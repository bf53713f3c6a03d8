"""allocate: from a list of specs to a running, versioned run folder.

Order matters here. Everything that can be checked is checked before the first byte is
written (every spec, every local file), so a mistake costs nothing; then the run folder is
claimed, input files are uploaded once each, the tables and YAML files are written, and only
then is the root node handed to the engine. The caller's spec objects are never modified.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import inspect
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
import pyarrow.compute as pc
import yaml
from pydantic import TypeAdapter, ValidationError

from scythe_oo.collector import SPEC_COLUMN
from scythe_oo.engine.base import RunPlan
from scythe_oo.errors import SpecValidationError
from scythe_oo.gather import conform
from scythe_oo.gcpause import paused_gc
from scythe_oo.layout import SemVer, claim_run_folder, resolve_version, safe_name
from scythe_oo.manifest import Manifest
from scythe_oo.node import ROOT, NodeJob, fail_run
from scythe_oo.schema import INDEX_PREFIX, FieldKind, typed_column
from scythe_oo.spec import ExperimentInputSpec, FileReference
from scythe_oo.strategies import resolve_engine, resolve_recursion, resolve_store
from scythe_oo.tables import parquet_sink, write_table

if TYPE_CHECKING:
    from scythe_oo.engine.base import Engine, RunHandle
    from scythe_oo.experiment import Experiment
    from scythe_oo.layout import RunLayout
    from scythe_oo.recursion import RecursionPolicy
    from scythe_oo.run import ExperimentRun
    from scythe_oo.store.base import ArtifactStore

MAX_LISTED_ERRORS = 20


@attrs.frozen
class LocalFile:
    """A local input file, identified by its content so a changed file is never mistaken."""

    path: Path
    digest: str


def allocate_run(
    cls: type[Experiment[Any, Any]],
    specs: Any,
    *,
    version: str | SemVer | None,
    store: ArtifactStore | None,
    engine: Engine | None,
    recursion: RecursionPolicy | None,
) -> ExperimentRun:
    from scythe_oo.run import ExperimentRun

    one_off = isinstance(specs, ExperimentInputSpec)
    with paused_gc():
        items = [specs] if one_off else _as_list(cls, specs)
        scan = scan_specs(cls, items)

    store = resolve_store(cls, store)
    engine = resolve_engine(cls, engine)
    recursion = resolve_recursion(cls, recursion)
    semver = resolve_version(store, cls.name, version, cls.version_policy)
    run_id = str(uuid.uuid4())
    manifest = Manifest(
        experiment_name=cls.name,
        experiment_class=f"{cls.__module__}:{cls.__qualname__}",
        version=str(semver),
        workflow_run_id=run_id,
        engine=engine.describe(),
        store=store.describe(),
        recursion={"factor": recursion.factor, "max_depth": recursion.max_depth},
        n_specs=len(items),
        one_off=one_off,
    )
    layout = claim_run_folder(store, cls.name, semver, manifest.to_yaml())
    try:
        uploaded = _upload_inputs(store, layout, scan.files)
        write_specs(
            store,
            layout.specs,
            lambda: specs_tables(cls, items, scan, layout.experiment_id, run_id, uploaded),
        )
        store.put_bytes(
            layout.io_spec, yaml.safe_dump(cls.schema.io_spec(), sort_keys=False).encode()
        )
        store.put_bytes(layout.input_artifacts, _input_artifacts_yaml(uploaded, scan.files))
        manifest = manifest.evolve(
            experiment_id=layout.experiment_id,
            io_spec=store.uri(layout.io_spec),
            input_artifacts=store.uri(layout.input_artifacts),
            specs_uri=store.uri(layout.specs),
            status="queued",
        )
        store.put_bytes(layout.manifest, manifest.to_yaml())
        handle = submit_run(cls, store, layout, manifest, engine)
    except BaseException as exc:
        fail_run(store, layout, f"allocate failed: {type(exc).__name__}: {exc}")
        raise
    return ExperimentRun(store=store, layout=layout, experiment=cls, handle=handle)


def submit_run(
    cls: type[Experiment[Any, Any]],
    store: ArtifactStore,
    layout: RunLayout,
    manifest: Manifest,
    engine: Engine,
) -> RunHandle:
    """Hand a written run folder to an engine: used by allocate, resume and retry_failed."""
    root = NodeJob(
        experiment=cls.name,
        experiment_id=layout.experiment_id,
        node=ROOT,
        factor=manifest.recursion["factor"],
        max_depth=0 if manifest.one_off else manifest.recursion["max_depth"],
        generation=manifest.generation,
        n_specs=manifest.n_specs,
    )
    plan = RunPlan(experiment=cls, layout=layout, store=store, root=root, n_specs=manifest.n_specs)
    return engine.submit(plan)


def _as_list(cls: type[Experiment[Any, Any]], specs: Any) -> list[Any]:
    if isinstance(specs, str | bytes | Mapping) or not isinstance(specs, Iterable):
        raise SpecValidationError(
            f"{cls.name}.allocate expects a {cls.schema.input_type.__name__} or a sequence of "
            f"them, got {type(specs).__name__}."
        )
    items = list(specs)
    if not items:
        raise SpecValidationError(
            f"{cls.name}.allocate got zero specs; pass at least one "
            f"{cls.schema.input_type.__name__}."
        )
    return items


def _revalidated(input_type: type[ExperimentInputSpec], item: Any) -> Any:
    """A validated copy of ``item``. The shallow field mapping is re-validated, which catches
    values mutated after construction without copying the caller's nested objects."""
    return input_type.model_validate(_fields_of(input_type, item))


def _fields_of(input_type: type[ExperimentInputSpec], item: Any) -> Any:
    """What to validate: a spec's current field values (copied, so validation cannot touch the
    caller's object), or the item itself when it is not a spec (a dict, say)."""
    return dict(item.__dict__) if isinstance(item, input_type) else item


VALIDATE_ROWS = 4096
"""Specs validated and encoded per call: few enough that no copy of a large sweep is held."""


@functools.cache
def _spec_list(input_type: type[ExperimentInputSpec]) -> TypeAdapter[list[ExperimentInputSpec]]:
    """Validates a chunk of specs in one call rather than one call per spec."""
    return TypeAdapter(list[input_type])  # type: ignore[valid-type]


@attrs.frozen
class EncodedChunk:
    """specs.pq columns for a run of consecutive specs, before the run folder is known.

    ``index`` holds one Arrow array per indexed input; ``computed`` the plain values of each
    computed feature, typed only when a whole chunk of specs.pq is built (by their values, so
    every chunk of specs.pq gets one type); ``tails`` each spec's JSON without its opening
    brace and bookkeeping fields, which are spliced in once the run's ids exist.
    """

    index: dict[str, pa.Array]
    computed: dict[str, list[Any]]
    tails: pa.Array


@attrs.frozen
class SpecScan:
    """What the first pass over the specs learned: local files, computed feature names and,
    for a sweep that fits in one chunk of specs.pq, that chunk's columns.

    Validated copies themselves are not kept: for 10^6 specs they would double the memory
    allocate needs. A sweep of up to SPECS_CHUNK_ROWS specs is encoded as it is checked, so
    its specs are validated once; a larger one is validated again, chunk by chunk, as
    specs.pq is written (``specs_tables``), so allocate never holds more than one chunk.
    """

    files: dict[str, dict[Path, LocalFile]]
    computed: list[str]
    encoded: list[EncodedChunk] | None


def scan_specs(cls: type[Experiment[Any, Any]], items: Sequence[Any]) -> SpecScan:
    """Check every spec and every local file; one error lists every problem found."""
    problems: list[str] = []
    files = _LocalFiles(cls)
    features = _Features(cls)
    encoded: list[EncodedChunk] | None = [] if len(items) <= SPECS_CHUNK_ROWS else None
    for first in range(0, len(items), VALIDATE_ROWS):
        positions, valid = _validate_chunk(
            cls, items[first : first + VALIDATE_ROWS], first, problems
        )
        if cls.schema.file_inputs:
            for position, spec in zip(positions, valid, strict=True):
                files.add(position, spec)
        names = features.check(positions, valid, problems)
        if encoded is not None and not problems:
            encoded.append(_encode_chunk(cls, valid, names))
    if problems:
        listed = problems[:MAX_LISTED_ERRORS]
        more = len(problems) - len(listed)
        raise SpecValidationError(
            f"{cls.name}.allocate: {len(problems)} problem(s) in the specs; nothing was written. "
            "Fix these and allocate again:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else "")
        )
    files.raise_problems()
    return SpecScan(files.files, features.names or [], encoded)


def _foreign(input_type: type[ExperimentInputSpec], item: Any) -> bool:
    """A spec of another experiment."""
    return type(item) is not input_type and (
        isinstance(item, ExperimentInputSpec) and not isinstance(item, input_type)
    )


def _validate_chunk(
    cls: type[Experiment[Any, Any]], chunk: Sequence[Any], first: int, problems: list[str]
) -> tuple[list[int], list[Any]]:
    """The positions and validated copies of the valid specs of ``chunk``, which starts at
    position ``first``; a problem for each invalid one."""
    input_type = cls.schema.input_type
    if not any(_foreign(input_type, item) for item in chunk):
        try:
            specs = _spec_list(input_type).validate_python(
                [_fields_of(input_type, item) for item in chunk]
            )
            return list(range(first, first + len(chunk))), specs
        except ValidationError:
            pass  # the slow path below tells exactly which spec failed, and why
    found = _validate_one_by_one(cls, chunk, first, problems)
    return [position for position, _ in found], [spec for _, spec in found]


def _validate_one_by_one(
    cls: type[Experiment[Any, Any]], chunk: Sequence[Any], first: int, problems: list[str]
) -> list[tuple[int, Any]]:
    """The valid specs of ``chunk`` with their positions; a problem for each invalid one."""
    input_type = cls.schema.input_type
    valid = []
    for position, item in enumerate(chunk, start=first):
        if _foreign(input_type, item):
            problems.append(
                f"spec #{position}: is a {type(item).__name__}, but {cls.name} takes "
                f"{input_type.__name__}; allocate it with the experiment it belongs to."
            )
            continue
        try:
            valid.append((position, _revalidated(input_type, item)))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(map(str, error["loc"])) or "<spec>"
                problems.append(
                    f"spec #{position}: field {where!r}: {error['msg']} "
                    f"(got {error.get('input')!r:.80})"
                )
    return valid


class _Features:
    """Computed feature names: checked once, then required to be the same for every spec."""

    def __init__(self, cls: type[Experiment[Any, Any]]) -> None:
        self.cls = cls
        self.names: list[str] | None = None
        input_type = cls.schema.input_type
        # The default computed_features of a model without computed fields is always empty:
        # no need to ask every spec.
        self.constant = (
            inspect.getattr_static(input_type, "computed_features")
            is inspect.getattr_static(ExperimentInputSpec, "computed_features")
            and not input_type.model_computed_fields
        )

    def check(
        self, positions: Sequence[int], specs: Sequence[Any], problems: list[str]
    ) -> list[str]:
        if self.constant:
            self.names = []
            return []
        for position, spec in zip(positions, specs, strict=True):
            names = list(spec.computed_features)
            if self.names is None:
                self.names = names
                _check_computed_names(self.cls, names)
            elif names != self.names:
                problems.append(
                    f"spec #{position}: computed_features gives keys {names} but the first "
                    f"spec gives {self.names}; every spec must produce the same keys in the "
                    "same order."
                )
        return self.names or []


def _check_computed_names(cls: type[Experiment[Any, Any]], names: list[str]) -> None:
    reserved = set(INDEX_PREFIX) | {p.name for p in cls.schema.inputs}
    clash = sorted(set(names) & reserved)
    if clash:
        raise SpecValidationError(
            f"{cls.name}: computed feature(s) {clash} reuse input field names; rename them."
        )


class _LocalFiles:
    """Every local input file of the specs, checked to exist and hashed, once per path."""

    def __init__(self, cls: type[Experiment[Any, Any]]) -> None:
        self.cls = cls
        self.files: dict[str, dict[Path, LocalFile]] = {}
        self.problems: list[str] = []
        self._by_name: dict[tuple[str, str], LocalFile] = {}
        self._seen: set[tuple[str, Path]] = set()

    def add(self, position: int, spec: Any) -> None:
        for plan in self.cls.schema.file_inputs:
            value = getattr(spec, plan.name)
            values = value if plan.kind is FieldKind.FILE_LIST else [value]
            for raw in values or ():
                if isinstance(raw, Path) and (plan.name, raw) not in self._seen:
                    self._seen.add((plan.name, raw))
                    self._check(position, plan.name, raw)

    def _check(self, position: int, field: str, raw: Path) -> None:
        path = raw.expanduser().resolve()
        known = self.files.setdefault(field, {})
        if path in known:
            return
        if not path.is_file():
            self.problems.append(
                f"spec #{position}: field {field!r}: local file {raw} does not exist "
                f"(resolved to {path}); fix the path or pass an s3:// or https:// URI."
            )
            return
        local = LocalFile(path, _sha256(path))
        stored_name = safe_name(path.name)
        other = self._by_name.get((field, stored_name))
        if other is not None and other.digest != local.digest:
            self.problems.append(
                f"spec #{position}: field {field!r}: {path} and {other.path} are different "
                f"files stored under the same name {stored_name!r}; they would overwrite "
                "each other in the run folder. Rename one of them."
            )
            return
        self._by_name[(field, stored_name)] = local
        known[path] = local

    def raise_problems(self) -> None:
        if self.problems:
            raise SpecValidationError(
                f"{self.cls.name}.allocate: {len(self.problems)} problem(s) with local input "
                "files; nothing was written:\n  " + "\n  ".join(self.problems[:MAX_LISTED_ERRORS])
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Uploaded = dict[tuple[str, Path], str]
"""(field, resolved local path) -> store URI of the uploaded copy."""


def _upload_inputs(
    store: ArtifactStore, layout: RunLayout, files: dict[str, dict[Path, LocalFile]]
) -> Uploaded:
    """Upload each distinct file of each field once, concurrently."""
    uploaded: Uploaded = {}
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures: dict[str, Future[str]] = {}
        for field, known in files.items():
            for path in known:
                key = layout.artifact(field, path.name)
                if key not in futures:  # identical content under the same name: store once
                    futures[key] = pool.submit(store.put_file, key, path)
                uploaded[(field, path)] = store.uri(key)
        for future in futures.values():
            future.result()  # surface any upload error
    return uploaded


def _input_artifacts_yaml(uploaded: Uploaded, files: dict[str, dict[Path, LocalFile]]) -> bytes:
    listing: dict[str, list[dict[str, str]]] = {}
    for field, known in sorted(files.items()):
        entries = {uploaded[(field, p)]: f.digest for p, f in known.items()}
        listing[field] = [{"uri": uri, "sha256": digest} for uri, digest in sorted(entries.items())]
    return yaml.safe_dump({"files": listing}, sort_keys=False).encode()


SPECS_CHUNK_ROWS = 50_000
"""Specs turned into Arrow and written per chunk: allocate holds one chunk's Python objects."""


def specs_tables(
    cls: type[Experiment[Any, Any]],
    items: Sequence[Any],
    scan: SpecScan,
    experiment_id: str,
    run_id: str,
    uploaded: Uploaded,
) -> Iterator[pa.Table]:
    """specs.pq, chunk by chunk: the index columns of every spec plus each spec as JSON
    (``__spec__``). The scan's encoding is used when it has one and no local file had to be
    re-pointed at its uploaded copy; otherwise each chunk is validated and encoded again."""
    rows = SPECS_CHUNK_ROWS
    for start in range(0, len(items), rows):
        with paused_gc():
            if scan.encoded is not None and not uploaded:
                encoded = scan.encoded
            else:
                encoded = encode_specs(cls, items[start : start + rows], scan.computed, uploaded)
            table = specs_table(cls, encoded, start, scan.computed, experiment_id, run_id)
        yield table


def encode_specs(
    cls: type[Experiment[Any, Any]],
    items: Sequence[Any],
    computed: Sequence[str],
    uploaded: Uploaded,
) -> list[EncodedChunk]:
    """Validate and encode specs again, with local files pointing at uploaded copies.

    ``scan_specs`` already found any problem, so this pass only re-points and re-encodes.
    """
    input_type = cls.schema.input_type
    encoded = []
    for first in range(0, len(items), VALIDATE_ROWS):
        chunk = items[first : first + VALIDATE_ROWS]
        specs = _spec_list(input_type).validate_python(
            [_fields_of(input_type, item) for item in chunk]
        )
        encoded.append(_encode_chunk(cls, [_repointed(cls, s, uploaded) for s in specs], computed))
    return encoded


def _repointed(cls: type[Experiment[Any, Any]], spec: Any, uploaded: Uploaded) -> Any:
    updates: dict[str, Any] = {}
    for plan in cls.schema.file_inputs:
        value = getattr(spec, plan.name)
        if plan.kind is FieldKind.FILE_LIST and value:
            updates[plan.name] = [_rereference(plan.name, v, uploaded) for v in value]
        elif value is not None:
            updates[plan.name] = _rereference(plan.name, value, uploaded)
    return spec.model_copy(update=updates) if updates else spec


def _encode_chunk(
    cls: type[Experiment[Any, Any]], specs: Sequence[Any], computed: Sequence[str]
) -> EncodedChunk:
    """One chunk of validated specs as specs.pq columns, built column by column."""
    schema = cls.schema
    index: dict[str, pa.Array] = {}
    for plan in schema.indexed_inputs:
        name = plan.name
        index[name] = typed_column(plan, [getattr(spec, name) for spec in specs])
    features: dict[str, list[Any]] = {}
    if computed:
        rows = [spec.computed_features for spec in specs]
        for name in computed:
            features[name] = [_plain(row[name]) for row in rows]
    # Bookkeeping is spliced into the JSON rather than copied into each model: for 10^6
    # specs the copies would cost more than everything else allocate does.
    exclude = set(_json_exclude(schema.input_type))
    to_json = schema.input_type.__pydantic_serializer__.to_json  # model_dump_json, unwrapped
    tails = []
    for spec in specs:
        body = to_json(spec, exclude=exclude).decode()
        tails.append(body[1:] if body == "{}" else "," + body[1:])
    return EncodedChunk(index, features, pa.array(tails, type=pa.string()))


@functools.cache
def _json_exclude(input_type: type[ExperimentInputSpec]) -> frozenset[str]:
    return frozenset(ExperimentInputSpec.BOOKKEEPING_FIELDS) | frozenset(
        input_type.model_computed_fields
    )


def specs_table(
    cls: type[Experiment[Any, Any]],
    encoded: Sequence[EncodedChunk],
    start: int,
    computed: Sequence[str],
    experiment_id: str,
    run_id: str,
) -> pa.Table:
    """One chunk of specs.pq, its first spec at position ``start``: the run's ids and each
    spec's position are spliced into the encoded JSON here, column-wise."""
    n = sum(len(chunk.tails) for chunk in encoded)
    head = (
        f'{{"experiment_id":{json.dumps(experiment_id)},"root_workflow_run_id":{json.dumps(run_id)}'
        ',"sort_index":'
    )
    sort_index = pa.array(range(start, start + n), type=pa.int64())
    tails = pa.chunked_array([chunk.tails for chunk in encoded], type=pa.string())
    payloads = pc.binary_join_element_wise(
        head, pc.cast(sort_index, pa.string()), tails.combine_chunks(), ""
    )
    columns: dict[str, pa.Array] = {
        "experiment_id": pa.array([experiment_id] * n, type=pa.string()),
        "sort_index": sort_index,
        "root_workflow_run_id": pa.array([run_id] * n, type=pa.string()),
    }
    for plan in cls.schema.indexed_inputs:
        pieces = [chunk.index[plan.name] for chunk in encoded]
        columns[plan.name] = pa.chunked_array(pieces, type=plan.arrow_type).combine_chunks()
    for name in computed:
        columns[name] = pa.array([value for chunk in encoded for value in chunk.computed[name]])
    columns[SPEC_COLUMN] = payloads
    return pa.table(columns)


def write_specs(store: ArtifactStore, key: str, chunks: Callable[[], Iterator[pa.Table]]) -> None:
    """Write specs.pq a chunk at a time, in the first chunk's schema.

    Computed features are typed by their values, so a later chunk can disagree with the first
    (ints, then floats). Then the chunks are built again and unified in memory: slower, but
    the types are the same as if the whole sweep had been one chunk.
    """
    stream = chunks()
    first = next(stream)
    try:
        with parquet_sink(store, key, first.schema) as writer:
            writer.write_table(first)
            for table in stream:
                writer.write_table(conform(table, first.schema))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        del first, stream
        write_table(store, key, pa.concat_tables(list(chunks()), promote_options="permissive"))


_FILE_REFERENCE = TypeAdapter(FileReference)


def _rereference(field: str, value: Any, uploaded: Uploaded) -> Any:
    if isinstance(value, Path):
        return _FILE_REFERENCE.validate_python(uploaded[(field, value.expanduser().resolve())])
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value
