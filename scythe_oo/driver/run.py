"""ExperimentRun: a handle on one run folder, live or finished, local or distributed.

Everything it reports comes from the store (manifest.yml, final/) unless the engine that runs
it is in this process, so a run can be reopened by its URI from any other process or machine.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pandas as pd
from tqdm import tqdm

from scythe_oo.definition.base import REGISTRY, AnyExperiment
from scythe_oo.definition.errors import RunFailedError
from scythe_oo.driver.report import write_report
from scythe_oo.driver.resolve import resolve_engine
from scythe_oo.driver.results import RunResults
from scythe_oo.driver.submit import submit_run
from scythe_oo.engine.protocol import Engine, Progress, RunHandle
from scythe_oo.engine.table import ENGINES, engine_class
from scythe_oo.runfolder.layout import RunLayout, run_folders
from scythe_oo.runfolder.manifest import TERMINAL_STATES, Manifest, ManifestFile, RunState
from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import store_for_run_uri

DOWNLOAD_THREADS = 8


@attrs.define(eq=False)
class ExperimentRun:
    """One run of an experiment: its folder, its status and its results."""

    store: ArtifactStore
    layout: RunLayout
    experiment: AnyExperiment | None = None
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

    @property
    def _manifest_file(self) -> ManifestFile:
        return ManifestFile(self.store, self.layout)

    def manifest(self) -> Manifest:
        return self._manifest_file.read()

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
        state: RunState = manifest.status
        if _driver_is_gone(manifest, self.store):
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
        if driven_elsewhere and not _driver_is_gone(manifest, self.store):
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
        if manifest.engine.get("included") == "true":
            raise RuntimeError(
                f"{self.uri} ran an included Hatchet workflow; it cannot be {reason}d here. "
                "Allocate it again (or replay it from Hatchet)."
            )
        cls = self.experiment or REGISTRY.get(manifest.experiment_name)
        engine = resolve_engine(cls, engine)
        previous = manifest.engine.get("kind", "")
        if previous in ENGINES:  # what is left of the old attempt must not race the new one
            old: Engine = engine_class(previous)()
            old.cancel(manifest)
        manifest = self._manifest_file.restarted(
            manifest, reason=reason, generation=generation, engine=engine.describe()
        )
        handle = submit_run(cls, self.store, self.layout, manifest, engine)
        return ExperimentRun(store=self.store, layout=self.layout, experiment=cls, handle=handle)

    def report(self, path: str | Path | None = None) -> Path:
        """Write the run's report, one self-contained HTML file, and return its path.

        Metadata, design, a histogram of every output, outputs against inputs, sensitivity,
        failures and leaf timings; it opens offline. ``path=None`` writes ``report.html`` into
        the run folder when the store is local, else a file in the working directory. Needs
        the ``[report]`` extra (matplotlib).
        """
        return write_report(self.store, self.layout, self.manifest(), path)

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
        store = store or store_for_run_uri(uri)
        key = store.key_of(uri.rstrip("/"))
        if key is None:
            raise ValueError(f"{uri} is not inside the store {store.describe()}")
        layout = RunLayout.from_experiment_id(key)
        experiment = REGISTRY.get(layout.experiment) if layout.experiment in REGISTRY else None
        return cls(store=store, layout=layout, experiment=experiment)

    def __repr__(self) -> str:
        return f"ExperimentRun({self.uri!r})"


def _attach(manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
    """A handle on the run from its engine: a live one in this process, or one that follows
    a run driven elsewhere (Hatchet). None when the store is all there is to go by."""
    kind = manifest.engine.get("kind", "")
    if kind not in ENGINES or (kind != "local" and not manifest.engine_run_id):
        return None
    engine: Engine = engine_class(kind)()
    return engine.attach(manifest, store)


def _driver_is_gone(manifest: Manifest, store: ArtifactStore) -> bool:
    """A local run whose driver process died, or whose run thread in this very process ended
    without recording the end (the store failed, say), will never finish by itself."""
    engine = manifest.engine
    if engine.get("kind") != "local" or engine.get("host") != socket.gethostname():
        return False
    if engine.get("pid") == str(os.getpid()):
        handle = _attach(manifest, store)
        return handle is None or handle.join(0)
    try:
        os.kill(int(engine["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, ValueError):
        return False
    return False


def _make_bar(total: int, label: str) -> Any:
    return tqdm(total=total, desc=label, unit="leaf", dynamic_ncols=True)


def list_runs(experiment: AnyExperiment, store: ArtifactStore) -> list[ExperimentRun]:
    """Every run folder of ``experiment`` in ``store``, newest first; foreign folders skipped."""
    return [
        ExperimentRun(store, layout, experiment) for layout in run_folders(store, experiment.name)
    ]
