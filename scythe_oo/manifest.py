"""manifest.yml: the one file that says what a run is and how it ended.

Everything here is safe to share: no tokens, keys or credentials are ever written.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

import attrs
import cattrs
import yaml

# The C loader when PyYAML was built with libyaml: wait() rereads the manifest every 0.2 s.
_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

RunState = Literal[
    "allocating", "queued", "running", "completed", "completed_with_failures", "failed"
]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "completed_with_failures", "failed"})


@attrs.frozen(kw_only=True)
class Counts:
    """How many specs succeeded and failed, out of how many."""

    succeeded: int = 0
    failed: int = 0
    total: int = 0


@attrs.frozen(kw_only=True)
class Manifest:
    """The contents of manifest.yml."""

    experiment_id: str = ""
    """Empty until the run folder is claimed; the other URIs until their files are written."""
    experiment_name: str
    experiment_class: str
    version: str
    created_at: str = attrs.field(factory=lambda: utc_now())
    io_spec: str = ""
    input_artifacts: str = ""
    specs_uri: str = ""
    workflow_run_id: str
    engine: dict[str, str]
    store: dict[str, str]
    recursion: dict[str, int]
    n_specs: int
    one_off: bool = False
    generation: int = 1
    status: RunState = "allocating"
    counts: Counts = Counts()
    engine_run_id: str | None = None
    finished_at: str | None = None
    error: str | None = None
    attempts: list[dict[str, Any]] = attrs.field(factory=list)
    scythe_oo_version: str = "0.1.0"

    def evolve(self, **changes: Any) -> Manifest:
        return attrs.evolve(self, **changes)

    def to_yaml(self) -> bytes:
        return yaml.safe_dump(_CONVERTER.unstructure(self), sort_keys=False).encode()

    @classmethod
    def from_yaml(cls, data: bytes) -> Manifest:
        raw = yaml.load(data, Loader=_LOADER)
        known = {a.name for a in attrs.fields(cls)}
        return _CONVERTER.structure({k: v for k, v in raw.items() if k in known}, cls)


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


_CONVERTER = cattrs.Converter()
