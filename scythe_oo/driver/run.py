"""ExperimentRun: a handle on one run folder, live or finished, local or distributed.

Everything it reports comes from the store (manifest.yml, final/) unless the engine that runs
it is in this process, so a run can be reopened by its URI from any other process or machine.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import weakref
from collections.abc import Generator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs
import pandas as pd

from scythe_oo.definition.base import REGISTRY, AnyExperiment
from scythe_oo.driver.progress import ProgressChoice
from scythe_oo.driver.replay import LeafRun, replay_leaf
from scythe_oo.driver.report import write_report
from scythe_oo.driver.resolve import resolve_engine
from scythe_oo.driver.results import RunResults
from scythe_oo.driver.run_view import run_details, run_html, run_repr
from scythe_oo.driver.submit import submit_run
from scythe_oo.driver.watch import Watch, attempt_counts, stored_counts
from scythe_oo.engine.protocol import Engine, Progress, RunHandle
from scythe_oo.engine.table import ENGINES, engine_class
from scythe_oo.leaf.logbook import read_leaf_log
from scythe_oo.runfolder.layout import RunLayout, run_folders
from scythe_oo.runfolder.manifest import TERMINAL_STATES, Manifest, ManifestFile, RunState
from scythe_oo.runfolder.versions import SemVer
from scythe_oo.storage.base import ArtifactStore
from scythe_oo.storage.factory import store_for_run_uri

DOWNLOAD_THREADS = 8

STORED_COUNTS_SECONDS = 5.0
"""How often a run followed through the store alone recounts its finished leaves."""

_FOLLOWED: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
"""The handle of each attempt started in this process, by ``<run uri>#<attempt>``, so every
ExperimentRun of a folder follows the attempt that another object of it started."""


@attrs.define(eq=False, repr=False)
class ExperimentRun:
    """One run of an experiment: its folder, its status and its results.

    Every ExperimentRun of a folder reflects the folder's latest attempt: after
    ``retry_failed()`` or ``resume()`` (on this object or any other, in this process or
    another), ``wait()`` waits for that attempt and the results read afterwards are its own.
    """

    store: ArtifactStore
    layout: RunLayout
    experiment: AnyExperiment | None = None
    handle: RunHandle | None = None
    _handle_attempt: int = attrs.field(default=0, init=False)
    """The attempt (number of restarts in the manifest) that ``handle`` follows."""
    _counted: tuple[float, int, int] | None = attrs.field(default=None, init=False)

    def __attrs_post_init__(self) -> None:
        if self.handle is not None:  # a run just allocated in this process
            _FOLLOWED[f"{self.uri}#0"] = self.handle

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

    @property
    def progress(self) -> Progress:
        """State and leaf counts now: from the engine when it can tell (a local run driven by
        this process, any Hatchet run), else from the store. Printable; calling it, as older
        code does (``run.progress()``), returns the same snapshot."""
        return self._snapshot()[1]

    def _snapshot(self) -> tuple[Manifest, Progress]:
        manifest = self.manifest()
        if manifest.status in TERMINAL_STATES:
            return manifest, Progress(
                state=manifest.status,
                done=manifest.counts.succeeded,
                failed=manifest.counts.failed,
                total=manifest.n_specs,
                error=manifest.error,
            )
        handle = self._follow(manifest)
        if handle is not None:
            snap = attempt_counts(handle.progress(manifest), manifest)
            if manifest.engine.get("kind") != "local" and snap.state not in TERMINAL_STATES:
                # A distributed engine's handle counts finished nodes; the journal of each
                # node's finished leaves is finer.
                done, failed = self._stored_counts(manifest)
                if done + failed > snap.done + snap.failed:
                    snap = attrs.evolve(snap, done=done, failed=failed)
            return manifest, snap
        state: RunState = manifest.status
        if driver_is_gone(manifest, self.store):
            state = "interrupted"
        done, failed = self._stored_counts(manifest)
        return manifest, Progress(state=state, done=done, failed=failed, total=manifest.n_specs)

    def _follow(self, manifest: Manifest) -> RunHandle | None:
        """The handle of the folder's latest attempt: ours, one another object of this
        process started, or one attached from the engine."""
        attempt = len(manifest.attempts)
        if self.handle is not None and self._handle_attempt == attempt:
            return self.handle
        handle = _FOLLOWED.get(f"{self.uri}#{attempt}") or _attach(manifest, self.store)
        self.handle, self._handle_attempt = handle, attempt
        return handle

    def _adopt(self, handle: RunHandle, attempt: int) -> None:
        self.handle, self._handle_attempt, self._counted = handle, attempt, None
        _FOLLOWED[f"{self.uri}#{attempt}"] = handle

    def _stored_counts(self, manifest: Manifest) -> tuple[int, int]:
        now = time.monotonic()
        if self._counted is None or now - self._counted[0] >= STORED_COUNTS_SECONDS:
            done, failed = stored_counts(self.store, self.layout, manifest.generation)
            failed = min(failed, manifest.n_specs)
            done = min(done, manifest.n_specs - failed)  # a bound, should a count run over
            self._counted = (now, done, failed)
        return self._counted[1], self._counted[2]

    def details(self) -> dict[str, Any]:
        """The run's state as plain data (status, counts, rate, ETA, start, engine, attempts,
        error): what ``scythe-oo status RUN --json`` prints."""
        manifest, snap = self._snapshot()
        return run_details(self.uri, manifest, snap)

    @property
    def status(self) -> str:
        """queued, running, completed, completed_with_failures, failed or interrupted."""
        return self.progress.state

    def failures(self) -> pd.DataFrame:
        """One row per failed spec: the error, its traceback, attempts, worker, wall time and
        the last lines of its log (``log_tail``)."""
        return self.results.failures()

    def logs(self, sort_index: int) -> str:
        """What the leaf at ``sort_index`` wrote with ``ctx.log``, as kept in the run folder
        (``logs/<leaf id>.log``): each attempt's lines under a header, bounded per leaf, and
        readable while the leaf still runs. Empty when it logged nothing."""
        self._check_index(sort_index)
        return read_leaf_log(self.store, self.layout, sort_index)

    def replay(
        self, sort_index: int, *, pdb: bool = False, scratch: str | Path | None = None
    ) -> LeafRun:
        """Run the leaf at ``sort_index`` again here, in this process, through the same
        fetch/run/publish hooks, so breakpoints in ``run`` stop. Its outputs go to a scratch
        folder (``scratch``, or a new temporary one), never into this run's tables. ``pdb``
        opens the post-mortem debugger if the leaf raises."""
        manifest = self.manifest()
        self._check_index(sort_index, manifest)
        cls = self.experiment or REGISTRY.get(manifest.experiment_name)
        return replay_leaf(cls, self.store, self.layout, sort_index, pdb=pdb, scratch=scratch)

    def _check_index(self, sort_index: int, manifest: Manifest | None = None) -> None:
        total = (manifest or self.manifest()).n_specs
        if not 0 <= sort_index < total:
            raise IndexError(
                f"sort_index {sort_index} is not in {self.experiment_id}, whose specs are "
                f"numbered 0 to {total - 1}"
            )

    def wait(
        self, timeout: float | None = None, *, progress: ProgressChoice = None
    ) -> ExperimentRun:
        """Block until the run ends, showing its progress, and print a summary line.

        ``progress``: None (the default) or True shows a bar on a terminal, a plain line
        every few seconds through a pipe, a widget in Jupyter (see "Progress" in the
        README); False shows nothing; ``"bar"``, ``"line"`` or ``"widget"`` forces one.
        Raises RunFailedError when the run ended without final tables, TimeoutError after
        ``timeout`` seconds. A run that finished with failed leaves does not raise: its
        status is ``completed_with_failures`` and ``failures()`` lists them.
        """
        watch = self._watch(timeout, progress)
        try:
            while not watch.poll():
                if self.handle is not None:
                    self.handle.join(watch.pause(0.2))
                else:
                    time.sleep(watch.pause(0.5))
        finally:
            watch.close()
        watch.finish()
        return self

    async def wait_async(
        self, timeout: float | None = None, *, progress: ProgressChoice = None
    ) -> ExperimentRun:
        """``wait`` for asyncio code and notebooks: ``await run.wait_async()``, or just
        ``await run``. The event loop stays free while the run goes on."""
        watch = self._watch(timeout, progress)
        try:
            while not await asyncio.to_thread(watch.poll):
                await asyncio.sleep(watch.pause(0.2 if self.handle is not None else 0.5))
        finally:
            watch.close()
        watch.finish()
        return self

    def __await__(self) -> Generator[Any, None, ExperimentRun]:
        return self.wait_async().__await__()

    def _watch(self, timeout: float | None, progress: ProgressChoice) -> Watch:
        return Watch(
            self._snapshot,
            label=f"{self.layout.experiment} {self.version}",
            tables=self.store.uri(self.layout.final_prefix),
            uri=self.uri,
            timeout=timeout,
            progress=progress,
        )

    def resume(self, *, engine: Engine | None = None) -> ExperimentRun:
        """Continue an interrupted run (driver killed, workers lost, store unreachable).

        Finished subtrees and journaled leaves are not run again. Returns this same object,
        which now follows the new attempt (as does every other ExperimentRun of the folder);
        a run that already ended is left as it is.
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
        if driven_elsewhere and not driver_is_gone(manifest, self.store):
            raise RuntimeError(
                f"{self.uri} is still being driven by process {manifest.engine.get('pid')} "
                f"on {manifest.engine.get('host')}; resume only a run whose driver died"
            )
        return self._restart(manifest, engine, generation=manifest.generation, reason="resume")

    def retry_failed(self, *, engine: Engine | None = None) -> ExperimentRun:
        """Run the failed specs again and regather final/ in the same folder.

        Successful leaves are kept; each retry is recorded in the manifest's ``attempts``.
        Returns this same object, which now follows the retry: ``wait()`` waits for it and
        the results read afterwards are the new ones.
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
        self.experiment = cls
        self._adopt(handle, len(manifest.attempts))
        return self

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
        return run_repr(self.uri, self.layout, self._quiet_snapshot())

    def _repr_html_(self) -> str:
        """What Jupyter shows for a run: its figures, and the first rows once it is done."""
        return run_html(self.uri, self.layout, self._quiet_snapshot(), self.results)

    def _quiet_snapshot(self) -> tuple[Manifest, Progress] | None:
        """A snapshot for display, or None when the store cannot be read: a repr must not
        raise."""
        try:
            return self._snapshot()
        except Exception:
            return None


def _attach(manifest: Manifest, store: ArtifactStore) -> RunHandle | None:
    """A handle on the run from its engine: a live one in this process, or one that follows
    a run driven elsewhere (Hatchet). None when the store is all there is to go by."""
    kind = manifest.engine.get("kind", "")
    if kind not in ENGINES or (kind != "local" and not manifest.engine_run_id):
        return None
    engine: Engine = engine_class(kind)()
    return engine.attach(manifest, store)


def driver_is_gone(manifest: Manifest, store: ArtifactStore) -> bool:
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


def list_runs(experiment: AnyExperiment, store: ArtifactStore) -> list[ExperimentRun]:
    """Every run folder of ``experiment`` in ``store``, newest first; foreign folders skipped."""
    return [
        ExperimentRun(store, layout, experiment) for layout in run_folders(store, experiment.name)
    ]
