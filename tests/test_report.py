"""The run report: one self-contained HTML file with the run's metadata, design, outputs,
outputs against inputs, sensitivity, failures and leaf timings, checked by reading the page
and by rendering it in headless Chromium."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pydantic import Field

from scythe_oo import (
    Experiment,
    ExperimentInputSpec,
    ExperimentOutputSpec,
    ExperimentRun,
    LeafContext,
    LocalEngine,
    LocalStore,
)
from scythe_oo.driver.report_data import gather_report_data
from scythe_oo.driver.sensitivity import rank_inputs
from tests.support.browser import render_page

pytestmark = pytest.mark.timeout(240)

ROOT = Path(__file__).resolve().parent.parent


class Design(ExperimentInputSpec):
    x: float = Field(ge=0, le=1, description="the input that matters")
    noise: float = Field(ge=0, le=1, description="an input that barely does")
    k: int = Field(ge=1, le=4)
    mode: Literal["a", "b", "c"]


class Outcome(ExperimentOutputSpec):
    y: float = Field(description="10 x + noise / 10")
    z: float
    big: bool


class Reported(Experiment[Design, Outcome]):
    name = "test_report_experiment"

    def run(self, spec: Design, ctx: LeafContext) -> Outcome:
        if spec.x > 0.97:
            raise ValueError(f"x={spec.x:.3f} is too big")
        if spec.k == 4 and spec.x < 0.03:
            raise KeyError("k=4 with tiny x")
        return Outcome(y=10 * spec.x + spec.noise / 10, z=spec.k + spec.x, big=spec.x > 0.5)


class Slow(Experiment[Design, Outcome]):
    name = "test_report_slow"

    def run(self, spec: Design, ctx: LeafContext) -> Outcome:
        time.sleep(2)
        return Outcome(y=0, z=0, big=False)


@pytest.fixture(scope="module")
def sobol_run(tmp_path_factory: pytest.TempPathFactory) -> ExperimentRun:
    store = LocalStore(tmp_path_factory.mktemp("report-store"))
    specs = Design.sample(512, "sobol", seed=1)
    return Reported.allocate(specs, store=store, engine=LocalEngine(max_workers=2)).wait()


@pytest.fixture(scope="module")
def page(sobol_run: ExperimentRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sobol_run.report(tmp_path_factory.mktemp("report") / "report.html")


class Page(HTMLParser):
    """The page's images, links, sections and table cells, as a test reads them."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.sources: list[str] = []
        self.links: list[str] = []
        self.sections: list[str] = []
        self.cells: list[str] = []
        self._in_cell = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "img":
            self.sources.append(found.get("src") or "")
        if found.get("href"):
            self.links.append(found["href"] or "")
        if tag == "section":
            self.sections.append(found.get("id") or "")
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self._in_cell = False

    def handle_data(self, data: str) -> None:
        if self._in_cell:
            self.cells[-1] += data


def test_the_page_holds_every_section_and_needs_nothing_else(
    sobol_run: ExperimentRun, page: Path
) -> None:
    text = page.read_text()
    parsed = Page(text)
    sections = ["run", "design", "outputs", "inputs", "sensitivity", "failures", "leaves"]
    assert parsed.sections == sections
    # every image is embedded; nothing points at the network (or anywhere else)
    assert len(parsed.sources) == 1 + 2 + 1  # outputs, one per numeric output, leaves
    assert all(src.startswith("data:image/png;base64,") for src in parsed.sources)
    assert parsed.links == ["data:,"]  # the empty favicon, so the browser asks for none
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text)
    assert "<script" not in text
    manifest = sobol_run.manifest()
    cells = parsed.cells
    for label, value in [
        ("experiment", "test_report_experiment"),
        ("version", manifest.version),
        ("status", "completed_with_failures"),
        ("specs", "512"),
        ("succeeded", f"{manifest.counts.succeeded:,}"),
        ("failed", f"{manifest.counts.failed:,}"),
        ("started", manifest.created_at),
        ("ended", str(manifest.finished_at)),
        ("method", "sobol"),
        ("seed", "1"),
    ]:
        assert cells[cells.index(label) + 1] == value, label
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    assert head.stdout.strip() in cells[cells.index("code version") + 1]
    assert "kind=local" in cells[cells.index("engine") + 1]


def test_failures_are_grouped_by_type_with_a_message_and_their_indexes(
    sobol_run: ExperimentRun, page: Path
) -> None:
    failures = sobol_run.failures().reset_index()
    cells = Page(page.read_text()).cells
    for kind, rows in failures.groupby("error_type"):
        at = cells.index(str(kind))
        assert cells[at + 1] == f"{len(rows):,}"
        assert rows["error_message"].iloc[0][:20] in cells[at + 2]
        listed = [int(i) for i in cells[at + 3].split(" ...")[0].split(", ")]
        assert listed == sorted(rows["sort_index"])[:50]


def test_sensitivity_ranks_the_input_that_matters_first_with_sobol_indices(
    sobol_run: ExperimentRun,
) -> None:
    run = sobol_run
    data = gather_report_data(run.store, run.layout, run.manifest())
    y = data.sensitivity["y"]
    assert y[0].input == "x" and y[0].value > 0.95
    assert y[0].sobol_first_order is not None and y[0].sobol_first_order > 0.9
    noise = next(f for f in y if f.input == "noise")
    assert noise.sobol_first_order is not None and noise.sobol_first_order < 0.05
    mode = next(f for f in y if f.input == "mode")
    assert mode.measure == "eta"
    assert data.rows == run.manifest().counts.succeeded
    assert data.numeric_inputs == ["x", "noise", "k"] and data.categorical_inputs == ["mode"]
    assert data.outputs == ["y", "z", "big"] and list(data.sensitivity) == ["y", "z"]
    # the histograms count every row; throughput adds up to every leaf
    assert int(data.histograms["y"].counts.sum()) == data.rows
    assert data.leaves is not None and data.leaves.total == 512
    finished = data.leaves.throughput_per_minute.sum() * data.leaves.bin_seconds / 60
    assert finished == pytest.approx(512)


def test_the_report_renders_in_chromium_without_a_request(page: Path) -> None:
    png, images, requests = render_page(page)
    assert [r for r in requests if not r.startswith("data:")] == [page.resolve().as_uri()]
    assert len(images) == 4
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    for image in images:
        assert image["complete"] and image["naturalWidth"] > 0, image["alt"]  # not broken
        left, top = int(image["x"]), int(image["y"])
        box = (left, top, left + int(image["width"]), top + int(image["height"]))
        assert box[2] - box[0] > 100 and box[3] - box[1] > 100, image
        pixels = np.asarray(shot.crop(box))
        ink = (pixels.min(axis=2) < 200).mean()  # share of the region that is not near-white
        colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
        assert ink > 0.02 and colours > 20, (image["alt"], ink, colours)


def test_a_run_without_a_design_or_failures_still_reports(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    specs = [Design(x=i / 20, noise=0.5, k=1, mode="a") for i in range(20)]
    run = Reported.allocate(specs, store=store, engine=LocalEngine(max_workers=1)).wait()
    path = run.report()  # no path: report.html in the (local) run folder
    assert path == Path(run.uri.removeprefix("file://")) / "report.html"
    text = path.read_text()
    assert "no design was recorded" in text and "No leaf failed." in text
    parsed = Page(text)
    assert len(parsed.sources) == 4 and parsed.sections[-1] == "leaves"
    # noise and k never change: no rank correlation (for both outputs, y and z)
    assert text.count('<td class="num">n/a</td>') == 2 * 2


def test_a_run_that_has_not_finished_has_no_report_yet(tmp_path: Path) -> None:
    run = Slow.allocate([Design(x=0.5, noise=0.5, k=1, mode="a")] * 2, store=LocalStore(tmp_path))
    with pytest.raises(RuntimeError, match="no final tables to report on yet"):
        run.report(tmp_path / "r.html")
    run.wait()


def test_a_missing_plotting_extra_says_how_to_install_it() -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from scythe_oo.driver.report import load_plots\n"
        "try:\n    load_plots()\nexcept ImportError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "pip install 'scythe-oo[report]'" in result.stdout, result.stderr


def test_first_order_indices_of_the_ishigami_function() -> None:
    """The textbook check: Ishigami's S1 are 0.314, 0.442 and 0 (a=7, b=0.1)."""
    from scipy.stats import qmc  # only this test draws points itself

    x = -np.pi + 2 * np.pi * qmc.Sobol(3, rng=0).random(2**14)
    y = np.sin(x[:, 0]) + 7 * np.sin(x[:, 1]) ** 2 + 0.1 * x[:, 2] ** 4 * np.sin(x[:, 0])
    frame = pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "y": y})
    names = ["x1", "x2", "x3"]
    found = {f.input: f for f in rank_inputs(frame, "y", names, [], names)}
    expected = {"x1": 0.3139, "x2": 0.4424, "x3": 0.0}
    for name, value in expected.items():
        assert found[name].sobol_first_order == pytest.approx(value, abs=0.03), name
    # x2 acts through sin^2: no monotone trend, so its rank correlation is near 0
    assert abs(found["x2"].value) < 0.05


def test_the_design_section_lists_sampled_and_held_fields(tmp_path: Path) -> None:
    specs = Design.sample(method="grid", levels={"x": 3, "noise": 2, "k": 2}, fixed={"mode": "b"})
    run = Reported.allocate(specs, store=LocalStore(tmp_path)).wait()
    text = run.report(tmp_path / "grid.html").read_text()
    cells = Page(text).cells
    assert cells[cells.index("method") + 1] == "grid" and cells[cells.index("n") + 1] == "12"
    assert cells[cells.index("x") + 1 : cells.index("x") + 3] == ["real", "[0, 1]"]
    assert cells[cells.index("mode") + 1] == "b"
    assert "<th>S1</th>" not in text  # Sobol indices only for a Sobol design


class Shaded(ExperimentInputSpec):
    x: float = Field(ge=0, le=1)
    shade: float | None = Field(default=None, ge=0, le=1)


class Gappy(ExperimentOutputSpec):
    y: float
    z: float


class WithGaps(Experiment[Shaded, Gappy]):
    name = "test_report_gaps"

    def run(self, spec: Shaded, ctx: LeafContext) -> Gappy:
        shade = spec.shade or 0.0
        return Gappy(y=spec.x + 10 * shade, z=float("nan") if spec.x < 0.5 else spec.x)


def test_missing_inputs_and_outputs_are_left_out_not_fatal(tmp_path: Path) -> None:
    specs = [Shaded(x=i / 29, shade=None if i % 3 == 0 else (i % 7) / 7) for i in range(30)]
    run = WithGaps.allocate(specs, store=LocalStore(tmp_path)).wait()
    data = gather_report_data(run.store, run.layout, run.manifest())
    by_input = {f.input: f for f in data.sensitivity["y"]}
    assert by_input["shade"].value > 0.8  # ranked on the 20 specs that have a shade
    assert data.histograms["z"].missing == 15 and int(data.histograms["z"].counts.sum()) == 15
    text = run.report(tmp_path / "gaps.html").read_text()
    assert len(Page(text).sources) == 1 + 2 + 1
