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
from collections.abc import Iterable, Mapping, Sequence
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
from scythe_oo.gcpause import paused_gc
from scythe_oo.layout import SemVer, claim_run_folder, resolve_version, safe_name
from scythe_oo.manifest import Manifest, utc_now
from scythe_oo.node import ROOT, NodeJob, fail_run
from scythe_oo.schema import INDEX_PREFIX, FieldKind, index_value
from scythe_oo.spec import ExperimentInputSpec, FileReference
from scythe_oo.strategies import resolve_engine, resolve_recursion, resolve_store
from scythe_oo.tables import write_table

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
        validated = validate_specs(cls, items)
        files = check_local_files(cls, validated)
        computed = _computed_features(cls, validated)

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
        n_specs=len(validated),
        one_off=one_off,
    )
    layout = claim_run_folder(store, cls.name, semver, manifest.to_yaml())
    try:
        uploaded = _upload_inputs(store, layout, files)
        with paused_gc():
            table = build_specs_table(
                cls, validated, computed, layout.experiment_id, run_id, uploaded
            )
        write_table(store, layout.specs, table)
        store.put_bytes(
            layout.io_spec, yaml.safe_dump(cls.schema.io_spec(), sort_keys=False).encode()
        )
        store.put_bytes(layout.input_artifacts, _input_artifacts_yaml(uploaded, files))
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


def validate_specs(cls: type[Experiment[Any, Any]], items: Sequence[Any]) -> list[Any]:
    """Validated copies of ``items``; one error lists every bad position."""
    input_type = cls.schema.input_type
    problems: list[str] = []
    validated: list[Any] = []
    for position, item in enumerate(items):
        if isinstance(item, ExperimentInputSpec) and not isinstance(item, input_type):
            problems.append(
                f"spec #{position}: is a {type(item).__name__}, but {cls.name} takes "
                f"{input_type.__name__}; allocate it with the experiment it belongs to."
            )
            continue
        try:
            # dict(model) is the shallow field mapping: re-validating it catches values mutated
            # after construction without copying the caller's nested objects.
            data = dict(item.__dict__) if isinstance(item, input_type) else item
            validated.append(input_type.model_validate(data))
        except ValidationError as exc:
            for error in exc.errors():
                where = ".".join(map(str, error["loc"])) or "<spec>"
                problems.append(
                    f"spec #{position}: field {where!r}: {error['msg']} "
                    f"(got {error.get('input')!r:.80})"
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
    return validated


def _local_paths(cls: type[Experiment[Any, Any]], spec: Any) -> Iterable[tuple[str, Path]]:
    for plan in cls.schema.file_inputs:
        value = getattr(spec, plan.name)
        values = value if plan.kind is FieldKind.FILE_LIST else [value]
        for v in values or ():
            if isinstance(v, Path):
                yield plan.name, v


def check_local_files(
    cls: type[Experiment[Any, Any]], specs: Sequence[Any]
) -> dict[str, dict[Path, LocalFile]]:
    """Every local input file, checked to exist and hashed, per field; nothing uploaded yet."""
    problems: list[str] = []
    files: dict[str, dict[Path, LocalFile]] = {}
    by_name: dict[tuple[str, str], LocalFile] = {}
    for position, spec in enumerate(specs):
        for field, raw in _local_paths(cls, spec):
            path = raw.expanduser().resolve()
            known = files.setdefault(field, {})
            if path in known:
                continue
            if not path.is_file():
                problems.append(
                    f"spec #{position}: field {field!r}: local file {raw} does not exist "
                    f"(resolved to {path}); fix the path or pass an s3:// or https:// URI."
                )
                continue
            local = LocalFile(path, _sha256(path))
            stored_name = safe_name(path.name)
            other = by_name.get((field, stored_name))
            if other is not None and other.digest != local.digest:
                problems.append(
                    f"spec #{position}: field {field!r}: {path} and {other.path} are different "
                    f"files stored under the same name {stored_name!r}; they would overwrite "
                    "each other in the run folder. Rename one of them."
                )
                continue
            by_name[(field, stored_name)] = local
            known[path] = local
    if problems:
        raise SpecValidationError(
            f"{cls.name}.allocate: {len(problems)} problem(s) with local input files; nothing "
            "was written:\n  " + "\n  ".join(problems[:MAX_LISTED_ERRORS])
        )
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _computed_features(
    cls: type[Experiment[Any, Any]], specs: Sequence[Any]
) -> list[dict[str, Any]]:
    features = [dict(spec.computed_features) for spec in specs]
    expected = list(features[0]) if features else []
    reserved = set(INDEX_PREFIX) | {p.name for p in cls.schema.inputs}
    clash = sorted(set(expected) & reserved)
    if clash:
        raise SpecValidationError(
            f"{cls.name}: computed feature(s) {clash} reuse input field names; rename them."
        )
    for position, row in enumerate(features):
        if list(row) != expected:
            raise SpecValidationError(
                f"spec #{position}: computed_features gives keys {list(row)} but spec #0 gives "
                f"{expected}; every spec must produce the same keys in the same order."
            )
    return features


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


def build_specs_table(
    cls: type[Experiment[Any, Any]],
    specs: Sequence[Any],
    computed: Sequence[dict[str, Any]],
    experiment_id: str,
    run_id: str,
    uploaded: Uploaded,
) -> pa.Table:
    """specs.pq: the index columns of every spec plus each spec as JSON (``__spec__``)."""
    schema = cls.schema
    exclude = set(ExperimentInputSpec.BOOKKEEPING_FIELDS) | set(
        schema.input_type.model_computed_fields
    )
    head = (
        f'{{"experiment_id":{json.dumps(experiment_id)},"root_workflow_run_id":{json.dumps(run_id)}'
    )
    finals: list[Any] = []
    payloads: list[str] = []
    for position, spec in enumerate(specs):
        updates: dict[str, Any] = {}
        for plan in schema.file_inputs:
            value = getattr(spec, plan.name)
            if plan.kind is FieldKind.FILE_LIST and value:
                updates[plan.name] = [_rereference(plan.name, v, uploaded) for v in value]
            elif value is not None:
                updates[plan.name] = _rereference(plan.name, value, uploaded)
        final = spec.model_copy(update=updates) if updates else spec
        finals.append(final)
        # Bookkeeping is spliced into the JSON rather than copied into each model: for 10^6
        # specs the copies would cost more than everything else allocate does.
        body = final.model_dump_json(exclude=exclude)
        tail = body[1:] if body == "{}" else "," + body[1:]
        payloads.append(f'{head},"sort_index":{position}{tail}')
    n = len(specs)
    columns: dict[str, pa.Array] = {
        "experiment_id": pa.array([experiment_id] * n, type=pa.string()),
        "sort_index": pa.array(range(n), type=pa.int64()),
        "root_workflow_run_id": pa.array([run_id] * n, type=pa.string()),
    }
    for plan in schema.indexed_inputs:
        values = [index_value(plan, getattr(final, plan.name)) for final in finals]
        columns[plan.name] = pa.array(values, type=plan.arrow_type)
    for name in computed[0] if computed else {}:
        columns[name] = pa.array([_plain(row[name]) for row in computed])
    columns[SPEC_COLUMN] = pa.array(payloads, type=pa.string())
    return pa.table(columns)


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
