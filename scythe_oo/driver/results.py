"""RunResults: the final tables of a run, read on demand from ``final/``."""

from __future__ import annotations

import io
import json
from typing import Any

import attrs
import pandas as pd

from scythe_oo.definition.errors import ArtifactNotFoundError
from scythe_oo.runfolder.layout import RunLayout
from scythe_oo.storage.base import ArtifactStore


@attrs.define
class RunResults:
    """The final tables of a run, read on demand from ``final/``."""

    store: ArtifactStore
    layout: RunLayout

    def output(self) -> Any:
        """The output of an included Hatchet workflow (final/output.json)."""
        return json.loads(self.store.get_bytes(self.layout.final_output))

    def list(self) -> list[str]:
        """Names of the tables in final/ (``scalars``, ``failures``, user dataframes...)."""
        prefix = self.layout.final_prefix + "/"
        return sorted(
            key[len(prefix) : -len(".pq")]
            for key in self.store.list_keys(self.layout.final_prefix)
            if key.endswith(".pq")
        )

    def dataframe(self, name: str) -> pd.DataFrame:
        """One final table as pandas, indexed by the spec's index levels."""
        key = self.layout.final(name)
        try:
            data = self.store.get_bytes(key)
        except ArtifactNotFoundError:
            available = ", ".join(self.list()) or "none yet (is the run finished?)"
            raise KeyError(
                f"no table {name!r} in {self.store.uri(self.layout.final_prefix)}; "
                f"available: {available}"
            ) from None
        return pd.read_parquet(io.BytesIO(data))

    def scalars(self) -> pd.DataFrame:
        return self.dataframe("scalars")

    def file_refs(self) -> pd.DataFrame:
        return self.dataframe("result_file_refs")

    def failures(self) -> pd.DataFrame:
        return self.dataframe("failures")
