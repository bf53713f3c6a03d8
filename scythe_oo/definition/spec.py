"""The pydantic bases users subclass to describe one simulation's inputs and outputs.

Bookkeeping fields (experiment_id, sort_index, run ids) live on the base so that every spec can
say where it belongs, but users never fill them in: ``allocate`` assigns them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar

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


class _FileReferenceMarker:
    """Tags an annotation as a file reference so the framework can find such fields."""

    def __repr__(self) -> str:
        return "FileReference"


class _NotIndexedMarker:
    """Tags an input field that must stay out of the results index."""

    def __repr__(self) -> str:
        return "NotIndexed"


FILE_REFERENCE_MARKER = _FileReferenceMarker()
NOT_INDEXED_MARKER = _NotIndexedMarker()

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


class ExperimentOutputSpec(BaseModel):
    """Base of every experiment's output schema.

    Scalar fields become columns of ``final/scalars.pq``; FileReference fields become columns of
    ``final/result_file_refs.pq``; each entry of ``dataframes`` becomes ``final/<name>.pq``.
    """

    # Instances returned by ``run`` are re-validated, so mutating a field after construction
    # cannot smuggle an out-of-schema value into the results.
    model_config = ConfigDict(
        extra="forbid", arbitrary_types_allowed=True, revalidate_instances="always"
    )

    dataframes: dict[str, pd.DataFrame] = Field(
        default_factory=dict,
        description="User tables; each is gathered into final/<name>.pq with the spec's index.",
        exclude=True,
    )
