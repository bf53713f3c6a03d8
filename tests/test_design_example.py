"""examples/building_energy/design.py end to end: sample with LHS, estimate, allocate, report."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from examples.building_energy.design import main

pytestmark = pytest.mark.timeout(300)


def test_the_design_example_samples_estimates_runs_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # results go to ./scythe-data
    main(["--n", "40", "--pilot", "6", "--workers", "10", "--price", "0.015"])
    out = capsys.readouterr().out
    assert "sampled 40 designs: lhs, seed 0" in out
    assert "Pilot estimate for simulate_energy: 6 of 40 specs" in out
    assert "at $0.015 per core-hour" in out
    report = Path(out.split("report:")[1].strip())
    assert report.is_file() and report.parent.parent.parent.name == "simulate_energy"
    manifest = yaml.safe_load((report.parent / "manifest.yml").read_text())
    assert manifest["status"] == "completed" and manifest["counts"]["succeeded"] == 40
    assert manifest["design"]["method"] == "lhs"
    assert manifest["design"]["ranges"]["setpoint_heating"] == [18.0, 22.0]
    assert "Sensitivity" in report.read_text()
    # the pilot ran in a throwaway store: the only run folder is the sweep's
    assert len(list((tmp_path / "scythe-data" / "simulate_energy").glob("v*/*"))) == 1
