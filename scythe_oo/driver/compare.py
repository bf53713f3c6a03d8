"""One table over several runs: how versions are compared, and how results get published.

Each run's tables are indexed by its inputs; stacked with a ``version`` level in front, the
runs of several versions line up input by input, so ``df.xs("v1.2.0")`` is one version and
``df.unstack("version")`` puts versions side by side.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from scythe_oo.driver.results import RunResults
from scythe_oo.runfolder.layout import RunLayout, run_folders
from scythe_oo.runfolder.manifest import ManifestFile
from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import ArtifactStore

VERSION_LEVEL = "version"
FINISHED = ("completed", "completed_with_failures")


def results_across(
    experiment: str,
    store: ArtifactStore,
    versions: Iterable[str | SemVer] | str | SemVer | None = None,
    table: str = "scalars",
) -> pd.DataFrame:
    """``table`` of the newest finished run of each of ``versions`` (default: every version
    that has one), stacked with a ``version`` index level in front, oldest version first."""
    finished: dict[SemVer, RunLayout] = {}
    for layout in run_folders(store, experiment):  # newest first
        if layout.version in finished:
            continue
        if ManifestFile(store, layout).read().status in FINISHED:
            finished[layout.version] = layout
    if not finished:
        raise LookupError(f"{experiment} has no finished run in {store.uri('')}")
    wanted = sorted(finished) if versions is None else _parse_versions(versions)
    missing = [str(v) for v in wanted if v not in finished]
    if missing:
        have = ", ".join(str(v) for v in sorted(finished))
        raise LookupError(
            f"{experiment} has no finished run of {', '.join(missing)}; finished versions: {have}"
        )
    frames = []
    for version in wanted:
        frame = RunResults(store, finished[version]).dataframe(table)
        if VERSION_LEVEL in frame.index.names:
            raise ValueError(
                f"{experiment}'s tables already have an index level named {VERSION_LEVEL!r}; "
                "compare runs with run.results.dataframe(...) instead"
            )
        frames.append(frame)
    return pd.concat(frames, keys=[str(v) for v in wanted], names=[VERSION_LEVEL])


def _parse_versions(versions: Iterable[str | SemVer] | str | SemVer) -> list[SemVer]:
    items = [versions] if isinstance(versions, str | SemVer) else list(versions)
    parsed = [v if isinstance(v, SemVer) else SemVer.parse(v) for v in items]
    return list(dict.fromkeys(parsed))
