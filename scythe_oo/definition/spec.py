"""The pydantic bases users subclass to describe one simulation's inputs and outputs.

Bookkeeping fields (experiment_id, sort_index, run ids) live on the base so that every spec can
say where it belongs, but users never fill them in: ``allocate`` assigns them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Self, overload

import pandas as pd
from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FileUrl,
    HttpUrl,
    Tag,
    UrlConstraints,
)

from scythe_oo.definition.annotations import FILE_REFERENCE_MARKER, NOT_INDEXED_MARKER
from scythe_oo.definition.design import SampledSpecs, SpecChunks
from scythe_oo.definition.sampling import MAX_GRID, Method, sample_specs

S3Url = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["s3"], host_required=True)]


def _reference_kind(value: Any) -> str:
    """Route a value by its scheme: JSON input would otherwise always look like a Path."""
    if isinstance(value, Path):
        return "path"
    text = str(value)
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme == "s3":
        return "s3"
    if scheme in ("http", "https"):
        return "http"
    if scheme == "file":
        return "file"
    return f"unsupported scheme {scheme!r}" if scheme else "path"


FileReference = Annotated[
    Annotated[S3Url, Tag("s3")]
    | Annotated[HttpUrl, Tag("http")]
    | Annotated[FileUrl, Tag("file")]
    | Annotated[Path, Tag("path")],
    Discriminator(_reference_kind),
    FILE_REFERENCE_MARKER,
]
"""A file an experiment reads or writes: an s3:// URI, an http(s) URL or a local Path.

Local paths in input specs are uploaded once at allocate and replaced by store URIs; remote
references are fetched into a local cache before ``run`` sees them, so ``run`` always gets a Path.
Local paths in outputs are uploaded after ``run`` returns.
"""

OptionalFileReference = FileReference | None
"""A file reference that may be absent."""

NotIndexed = NOT_INDEXED_MARKER
"""Use as ``Annotated[list[float], NotIndexed]`` to keep a non-scalar input out of the index."""


class ExperimentInputSpec(BaseModel):
    """Base of every experiment's input schema.

    Subclass it and declare typed fields with descriptions: they become the columns of the
    results index and the documentation in ``experiment_io_spec.yml``.
    """

    # inf and NaN are valid floats: specs.pq and leaf payloads keep them (JSON Infinity/NaN).
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="constants")

    experiment_id: str = Field(
        default="",
        description="Run folder id (<experiment>/<version>/<timestamp>); set by allocate.",
    )
    sort_index: int = Field(
        default=-1,
        ge=-1,
        description="Position of the spec in the allocated sequence; set by allocate.",
    )
    root_workflow_run_id: str | None = Field(
        default=None, description="Id of the run's root scatter/gather node; set by allocate."
    )
    workflow_run_id: str | None = Field(
        default=None, description="Id of the leaf that ran this spec; set by the engine."
    )

    BOOKKEEPING_FIELDS: ClassVar[tuple[str, ...]] = (
        "experiment_id",
        "sort_index",
        "root_workflow_run_id",
        "workflow_run_id",
    )

    @property
    def computed_features(self) -> dict[str, Any]:
        """Extra index levels derived from the inputs.

        By default these are the model's pydantic ``@computed_field`` properties; override to
        add others. Values must be scalars and every spec must produce the same keys.
        """
        return {name: getattr(self, name) for name in type(self).model_computed_fields}

    @overload
    @classmethod
    def sample(
        cls,
        n: int | None = None,
        method: Method = "lhs",
        *,
        seed: int = 0,
        fixed: Mapping[str, Any] | None = None,
        choices: Mapping[str, Sequence[Any]] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        levels: int | Mapping[str, int] | None = None,
        max_grid: int = MAX_GRID,
        chunk_size: None = None,
    ) -> SampledSpecs[Self]: ...

    @overload
    @classmethod
    def sample(
        cls,
        n: int | None = None,
        method: Method = "lhs",
        *,
        seed: int = 0,
        fixed: Mapping[str, Any] | None = None,
        choices: Mapping[str, Sequence[Any]] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        levels: int | Mapping[str, int] | None = None,
        max_grid: int = MAX_GRID,
        chunk_size: int,
    ) -> SpecChunks[Self]: ...

    @classmethod
    def sample(
        cls,
        n: int | None = None,
        method: Method = "lhs",
        *,
        seed: int = 0,
        fixed: Mapping[str, Any] | None = None,
        choices: Mapping[str, Sequence[Any]] | None = None,
        ranges: Mapping[str, tuple[float, float]] | None = None,
        levels: int | Mapping[str, int] | None = None,
        max_grid: int = MAX_GRID,
        chunk_size: int | None = None,
    ) -> SampledSpecs[Self] | SpecChunks[Self]:
        """``n`` validated specs drawn from the design space the schema declares.

        The schema is the design: numeric fields range over their ``ge``/``gt``/``le``/``lt``
        bounds (an exclusive bound is never drawn; ``json_schema_extra={"scale": "log"}`` draws
        on a log scale), integers are drawn as integers, and ``Literal``, ``Enum`` and ``bool``
        fields over their values. ``ranges`` narrows a numeric field, ``choices`` lists the
        values of any field (file references need it), and ``fixed`` holds a field at one value.
        A field that cannot be placed and has no default is a DesignError naming each one.

        ``method`` is ``lhs`` (Latin hypercube), ``sobol`` (scrambled; best at n a power of 2),
        ``halton``, ``random`` or ``grid`` (the full factorial of ``levels`` per numeric field
        and every category; ``n`` follows from it, and more than ``max_grid`` specs is refused).
        The same arguments always give the same specs. The result carries ``.design``, which
        ``allocate`` records in manifest.yml. With ``chunk_size`` the specs are not made until
        iterated, ``chunk_size`` at a time (a SpecChunks), so 10^6 of them never exist at once.
        """
        return sample_specs(
            cls,
            n,
            method,
            seed=seed,
            fixed=fixed,
            choices=choices,
            ranges=ranges,
            levels=levels,
            max_grid=max_grid,
            chunk_size=chunk_size,
        )


class ExperimentOutputSpec(BaseModel):
    """Base of every experiment's output schema.

    Scalar fields become columns of ``final/scalars.pq``; FileReference fields become columns of
    ``final/result_file_refs.pq``; each entry of ``dataframes`` becomes ``final/<name>.pq``.
    """

    # Instances returned by ``run`` are re-validated, so mutating a field after construction
    # cannot smuggle an out-of-schema value into the results (unless revalidating could
    # change nothing: see ``leaf.execute._intact``).
    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, revalidate_instances="always"
    )

    dataframes: dict[str, pd.DataFrame] = Field(
        default_factory=dict,
        description="User tables; each is gathered into final/<name>.pq with the spec's index.",
        exclude=True,
    )
