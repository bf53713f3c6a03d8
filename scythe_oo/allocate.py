"""allocate: from a list of specs to a running, versioned run folder.

Order matters here. Everything that can be checked is checked before the first byte is
written (every spec, every local file), so a mistake costs nothing; then the run folder is
claimed, input files are uploaded once each, the tables and YAML files are written, and only
then is the root node handed to the engine. The caller's spec objects are never modified.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pyarrow as pa
import yaml
from pydantic import TypeAdapter, ValidationError

from scythe_oo.collector import SPEC_COLUMN
from scythe_oo.engine.base import RunPlan
from scythe_oo.errors import SpecValidationError
from scythe_oo.gather import conform
from scythe_oo.gcpause import paused_gc
from scythe_oo.layout import SemVer, claim_run_folder, resolve_version, safe_name
from scythe_oo.manifest import Manifest, utc_now
from scythe_oo.node import ROOT, NodeJob, fail_run
from scythe_oo.schema import INDEX_PREFIX, FieldKind, index_value
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
        experiment_id="",
        experiment_name=cls.name,
        experiment_class=f"{cls.__module__}:{cls.__qualname__}",
        version=str(semver),
        created_at=utc_now(),
        io_spec="",
        input_artifacts="",
        specs_uri="",
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
            lambda: specs_tables(cls, items, scan.computed, layout.experiment_id, run_id, uploaded),
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
    data = dict(item.__dict__) if isinstance(item, input_type) else item
    return input_type.model_validate(data)


@attrs.frozen
class SpecScan:
    """What the first pass over the specs learned: local files and computed feature names.

    The validated copies themselves are not kept: for 10^6 specs they would double the
    memory allocate needs. The second pass (specs_tables) validates again as it writes.
    """

    files: dict[str, dict[Path, LocalFile]]
    computed: list[str]


def scan_specs(cls: type[Experiment[Any, Any]], items: Sequence[Any]) -> SpecScan:
    """Check every spec and every local file; one error lists every problem found."""
    input_type = cls.schema.input_type
    problems: list[str] = []
    files = _LocalFiles(cls)
    computed: list[str] | None = None
    for position, item in enumerate(items):
        if isinstance(item, ExperimentInputSpec) and not isinstance(item, input_type):
            problems.append(
                f"spec #{position}: is a {type(item).__name__}, but {cls.name} takes "
                f"{input_type.__name__}; allocate it with the experiment it belongs to."
            )
            continue
        try:
            spec = _revalidated(input_type, item)
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(map(str, error["loc"])) or "<spec>"
                problems.append(
                    f"spec #{position}: field {where!r}: {error['msg']} "
                    f"(got {error.get('input')!r:.80})"
                )
            continue
        files.add(position, spec)
        names = list(spec.computed_features)
        if computed is None:
            computed = names
            _check_computed_names(cls, names)
        elif names != computed:
            problems.append(
                f"spec #{position}: computed_features gives keys {names} but the first spec "
                f"gives {computed}; every spec must produce the same keys in the same order."
            )
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
    return SpecScan(files.files, computed or [])


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
    computed: Sequence[str],
    experiment_id: str,
    run_id: str,
    uploaded: Uploaded,
    chunk_rows: int | None = None,
) -> Iterator[pa.Table]:
    """specs.pq, chunk by chunk: the index columns of every spec plus each spec as JSON
    (``__spec__``).

    Each spec is validated again and dropped once its JSON and index values are taken, so
    no copy of the whole sweep is held (``scan_specs`` already found any problem).
    """
    rows = chunk_rows or SPECS_CHUNK_ROWS
    for start in range(0, len(items), rows):
        with paused_gc():
            table = _specs_chunk(
                cls, items[start : start + rows], start, computed, experiment_id, run_id, uploaded
            )
        yield table


def _specs_chunk(
    cls: type[Experiment[Any, Any]],
    items: Sequence[Any],
    start: int,
    computed: Sequence[str],
    experiment_id: str,
    run_id: str,
    uploaded: Uploaded,
) -> pa.Table:
    schema = cls.schema
    input_type = schema.input_type
    exclude = set(ExperimentInputSpec.BOOKKEEPING_FIELDS) | set(input_type.model_computed_fields)
    head = (
        f'{{"experiment_id":{json.dumps(experiment_id)},"root_workflow_run_id":{json.dumps(run_id)}'
    )
    indexed = schema.indexed_inputs
    values: dict[str, list[Any]] = {name: [] for name in [p.name for p in indexed] + list(computed)}
    payloads: list[str] = []
    for position, item in enumerate(items, start):
        spec = _revalidated(input_type, item)
        updates: dict[str, Any] = {}
        for plan in schema.file_inputs:
            value = getattr(spec, plan.name)
            if plan.kind is FieldKind.FILE_LIST and value:
                updates[plan.name] = [_rereference(plan.name, v, uploaded) for v in value]
            elif value is not None:
                updates[plan.name] = _rereference(plan.name, value, uploaded)
        if updates:
            spec = spec.model_copy(update=updates)
        for plan in indexed:
            values[plan.name].append(index_value(plan, getattr(spec, plan.name)))
        if computed:
            features = spec.computed_features
            for name in computed:
                values[name].append(_plain(features[name]))
        # Bookkeeping is spliced into the JSON rather than copied into each model: for 10^6
        # specs the copies would cost more than everything else allocate does.
        body = spec.model_dump_json(exclude=exclude)
        tail = body[1:] if body == "{}" else "," + body[1:]
        payloads.append(f'{head},"sort_index":{position}{tail}')
    n = len(items)
    columns: dict[str, pa.Array] = {
        "experiment_id": pa.array([experiment_id] * n, type=pa.string()),
        "sort_index": pa.array(range(start, start + n), type=pa.int64()),
        "root_workflow_run_id": pa.array([run_id] * n, type=pa.string()),
    }
    for plan in indexed:
        columns[plan.name] = pa.array(values.pop(plan.name), type=plan.arrow_type)
    for name in computed:
        columns[name] = pa.array(values.pop(name))
    columns[SPEC_COLUMN] = pa.array(payloads, type=pa.string())
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
    import enum

    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return value
