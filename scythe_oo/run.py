"""ExperimentRun: a handle on one run folder, live or finished, local or distributed.

Everything it reports comes from the store (manifest.yml, final/) unless the engine that runs
it is in this process, so a run can be reopened by its URI from any other process or machine.
"""

from __future__ import annotations

import io
import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pandas as pd

from scythe_oo.engine.base import Progress
from scythe_oo.errors import ArtifactNotFoundError, RunFailedError
from scythe_oo.layout import RunLayout, SemVer, is_run_timestamp
from scythe_oo.manifest import TERMINAL_STATES, Manifest, utc_now
from scythe_oo.store.base import join_key

if TYPE_CHECKING:
    from scythe_oo.engine.base import Engine, RunHandle
    from scythe_oo.experiment import Experiment
    from scythe_oo.store.base import ArtifactStore

FINAL_TABLES = ("scalars", "result_file_refs", "failures")
DOWNLOAD_THREADS = 8


@attrs.define
class RunResults:
    """The final tables of a run, read on demand from ``final/``."""

    store: ArtifactStore
    layout: RunLayout

    def output(self) -> Any:
        """The output of an included Hatchet workflow (final/output.json)."""
        import json

        return json.loads(self.store.get_bytes(f"{self.layout.final_prefix}/output.json"))

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


@attrs.define(eq=False)
class ExperimentRun:
    """One run of an experiment: its folder, its status and its results."""

    store: ArtifactStore
    layout: RunLayout
    experiment: type[Experiment[Any, Any]] | None = None
    handle: RunHandle | None = None

    @property
    def uri(self) -> str:
        """The run folder (file:// or s3://)."""
        return self.store.uri(self.layout.root)

    @property
    def version(self) -> SemVer:
        return self.layout.version

    @property
    def experiment_id(self) -> str:
        return self.layout.experiment_id

    @property
    def results(self) -> RunResults:
        return RunResults(self.store, self.layout)

    def manifest(self) -> Manifest:
        return Manifest.from_yaml(self.store.get_bytes(self.layout.manifest))

    def progress(self) -> Progress:
        """State and leaf counts: from the engine when it runs in this process, else the store."""
        manifest = self.manifest()
        if manifest.status in TERMINAL_STATES:
            return Progress(
                state=manifest.status,
                done=manifest.counts.succeeded,
                failed=manifest.counts.failed,
                total=manifest.n_specs,
                error=manifest.error,
            )
        if self.handle is None:
            self.handle = _attach(manifest, self.store)
        if self.handle is not None:
            return self.handle.progress()
        state: str = manifest.status
        if _driver_is_gone(manifest):
            state = "interrupted"
        return Progress(state=state, done=0, failed=0, total=manifest.n_specs)

    @property
    def status(self) -> str:
        """queued, running, completed, completed_with_failures, failed or interrupted."""
        return self.progress().state

    def failures(self) -> pd.DataFrame:
        """One row per failed spec: the error, its traceback, attempts, worker, wall time."""
        return self.results.failures()

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> ExperimentRun:
        """Block until the run ends; show a progress bar when stderr is a terminal.

        Raises RunFailedError when the run ended without final tables. A run that finished with
        failed leaves does not raise: its status is ``completed_with_failures`` and
        ``failures()`` lists them.
        """
        show = sys.stderr.isatty() if progress is None else progress
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        try:
            while True:
                snap = self.progress()
                if show:
                    bar = bar or _make_bar(snap.total, self.layout.experiment_id)
                    bar.n = snap.done + snap.failed
                    bar.set_postfix_str(f"failed={snap.failed}" if snap.failed else snap.state)
                    bar.refresh()
                if snap.state in TERMINAL_STATES or snap.state == "interrupted":
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"{self.experiment_id} still {snap.state} after {timeout}s")
                if self.handle is not None:
                    self.handle.join(0.2 if remaining is None else min(0.2, remaining))
                else:
                    time.sleep(0.5 if remaining is None else min(0.5, remaining))
        finally:
            if bar is not None:
                bar.close()
        if snap.state in ("failed", "interrupted"):
            raise RunFailedError(
                f"run {self.uri} ended as {snap.state}: {snap.error or 'no detail recorded'}"
            )
        return self

    def resume(self, *, engine: Engine | None = None) -> ExperimentRun:
        """Continue an interrupted run (driver killed, workers lost, store unreachable).

        Finished subtrees and journaled leaves are not run again. A run that already ended is
        returned as it is.
        """
        manifest = self.manifest()
        if manifest.status in ("completed", "completed_with_failures"):
            return self
        if self.handle is not None and not self.handle.join(0):
            raise RuntimeError(f"{self.uri} is still running in this process; wait() for it")
        driven_elsewhere = manifest.engine.get("kind") == "local" and manifest.status in (
            "queued",
            "running",
        )
        if driven_elsewhere and not _driver_is_gone(manifest):
            raise RuntimeError(
                f"{self.uri} is still being driven by process {manifest.engine.get('pid')} "
                f"on {manifest.engine.get('host')}; resume only a run whose driver died"
            )
        return self._restart(manifest, engine, generation=manifest.generation, reason="resume")

    def retry_failed(self, *, engine: Engine | None = None) -> ExperimentRun:
        """Run the failed specs again and regather final/ in the same folder.

        Successful leaves are kept; each retry is recorded in the manifest's ``attempts``.
        """
        manifest = self.manifest()
        if manifest.status not in TERMINAL_STATES:
            raise RuntimeError(
                f"{self.uri} is {manifest.status}; wait for it (or resume it) before retrying"
            )
        if manifest.status == "completed":
            return self
        return self._restart(
            manifest, engine, generation=manifest.generation + 1, reason="retry_failed"
        )

    def _restart(
        self, manifest: Manifest, engine: Engine | None, *, generation: int, reason: str
    ) -> ExperimentRun:
        from scythe_oo.allocate import submit_run
        from scythe_oo.include import INCLUDED_PREFIX
        from scythe_oo.registry import REGISTRY
        from scythe_oo.strategies import resolve_engine

        if manifest.experiment_class.startswith(INCLUDED_PREFIX):
            raise RuntimeError(
                f"{self.uri} ran an included Hatchet workflow; it cannot be {reason}d here. "
                "Allocate it again (or replay it from Hatchet)."
            )
        cls = self.experiment or REGISTRY.get(manifest.experiment_name)
        engine = resolve_engine(cls, engine)
        history = [
            *manifest.attempts,
            {
                "reason": reason,
                "generation": generation,
                "at": utc_now(),
                "previous_status": manifest.status,
                "previous_counts": attrs.asdict(manifest.counts),
            },
        ]
        manifest = manifest.evolve(
            status="queued",
            generation=generation,
            attempts=history,
            engine=engine.describe(),
            finished_at=None,
            error=None,
        )
        self.store.put_bytes(self.layout.manifest, manifest.to_yaml())
        handle = submit_run(cls, self.store, self.layout, manifest, engine)
        return ExperimentRun(store=self.store, layout=self.layout, experiment=cls, handle=handle)

    def download(self, dest: str | Path) -> Path:
        """Copy the run folder's final tables and metadata into ``dest``.

        Only final/ is listed (a big run folder holds millions of per-leaf objects), and the
        files are fetched a few at a time in parallel, which is what makes S3 fast.
        """
        dest = Path(dest)
        layout = self.layout
        keys = [layout.manifest, layout.io_spec, layout.input_artifacts, layout.specs]
        keys += self.store.list_keys(layout.final_prefix)
        present = [k for k in keys if k.startswith(layout.final_prefix) or self.store.exists(k)]

        def fetch(key: str) -> Path:
            return self.store.get_file(key, dest / key[len(layout.root) + 1 :])

        with ThreadPoolExecutor(max_workers=DOWNLOAD_THREADS) as pool:
            list(pool.map(fetch, present))
        return dest

    @classmethod
    def open(cls, uri: str, *, store: ArtifactStore | None = None) -> ExperimentRun:
        """Reopen a run by the URI of its folder (file:// or s3://)."""
        store = store or _store_for_uri(uri)
        key = store.key_of(uri.rstrip("/"))
        if key is None:
            raise ValueError(f"{uri} is not inside the store {store.describe()}")
        layout = RunLayout.from_experiment_id(key)
        from scythe_oo.registry import REGISTRY

        experiment = REGISTRY.get(layout.experiment) if layout.experiment in REGISTRY else None
        return cls(store=store, layout=layout, experiment=experiment)

    def __repr__(self) -> str:
        return f"ExperimentRun({self.uri!r})"


def _store_for_uri(uri: str) -> ArtifactStore:
    """The store a run folder URI lives in: its root is three levels above the folder."""
    from urllib.parse import unquote, urlparse

    parsed = urlparse(uri.rstrip("/"))
    if parsed.scheme == "file":
        from scythe_oo.store.local import LocalStore

        return LocalStore(root=Path(unquote(parsed.path)).parents[2])
    if parsed.scheme == "s3":
        from scythe_oo.store.s3 import S3Store

        parts = parsed.path.strip("/").split("/")
        return S3Store(bucket=parsed.netloc, prefix="/".join(parts[:-3]))
    raise ValueError(f"{uri} is neither a file:// nor an s3:// URI")


def _attach(manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
    """A handle on a run driven elsewhere, when its engine can report on it."""
    if manifest.engine.get("kind") == "hatchet" and manifest.engine_run_id:
        from scythe_oo.engine.hatchet import HatchetEngine

        return HatchetEngine().attach(manifest, store)
    return None


def _driver_is_gone(manifest: Manifest) -> bool:
    """A local run whose driver process died on this host will never finish by itself."""
    engine = manifest.engine
    if engine.get("kind") != "local" or engine.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(engine["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def _make_bar(total: int, label: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="leaf", dynamic_ncols=True)


def list_runs(experiment: type[Experiment[Any, Any]], store: ArtifactStore) -> list[ExperimentRun]:
    """Every run folder of ``experiment`` in ``store``, newest first; foreign folders skipped."""
    found: list[tuple[str, SemVer, ExperimentRun]] = []
    for version_dir in store.list_dirs(experiment.name):
        if not SemVer.is_version(version_dir):
            continue
        version = SemVer.parse(version_dir)
        for stamp in store.list_dirs(join_key(experiment.name, version_dir)):
            if not is_run_timestamp(stamp):
                continue
            layout = RunLayout(experiment.name, version, stamp)
            if store.exists(layout.manifest):
                found.append((_stamp_key(stamp), version, ExperimentRun(store, layout, experiment)))
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [run for _, _, run in found]


def _stamp_key(stamp: str) -> str:
    """Sortable form of a folder name: same-second runs carry a -2, -3... suffix."""
    if stamp.count("-") > 4:
        base, suffix = stamp.rsplit("-", 1)
        return f"{base}#{int(suffix):06d}"
    return f"{stamp}#000001"
