"""SemVer, version resolution against a real LocalStore, run-folder claiming and RunLayout keys."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from scythe_oo import LocalStore, SemVer
from scythe_oo.runfolder import layout as layout_module
from scythe_oo.runfolder.layout import RunLayout, claim_run_folder, is_run_timestamp
from scythe_oo.runfolder.versions import FIRST_VERSION, existing_versions, resolve_version

POLICIES = ("bumpmajor", "bumpminor", "bumppatch", "keep")

# --------------------------------------------------------------------------------------------
# SemVer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("v1.2.3", SemVer(1, 2, 3)),
        ("1.2.3", SemVer(1, 2, 3)),
        ("v0.0.0", SemVer(0, 0, 0)),
        ("v10.20.30", SemVer(10, 20, 30)),
        (" v1.0.0 ", SemVer(1, 0, 0)),
    ],
)
def test_semver_parse(text: str, expected: SemVer) -> None:
    assert SemVer.parse(text) == expected


@pytest.mark.parametrize("version", [SemVer(1, 2, 3), SemVer(0, 0, 0), SemVer(12, 0, 40)])
def test_semver_str_round_trips(version: SemVer) -> None:
    text = str(version)
    assert text.startswith("v")
    assert SemVer.parse(text) == version
    assert SemVer.is_version(text)


def test_semver_str_format() -> None:
    assert str(SemVer(1, 10, 0)) == "v1.10.0"


@pytest.mark.parametrize(
    "text", ["v1.2", "1.2", "v1.2.3.4", "va.b.c", "", "v", "v-1.2.3", "latest", "v1.2.3-rc1", "V1"]
)
def test_semver_parse_rejects_invalid(text: str) -> None:
    with pytest.raises(ValueError, match=r"not of the form v1\.2\.3"):
        SemVer.parse(text)
    assert not SemVer.is_version(text)


def test_is_version_requires_the_v_prefix() -> None:
    assert SemVer.is_version("v1.2.3")
    assert not SemVer.is_version("1.2.3")


def test_semver_ordering_is_numeric_not_lexical() -> None:
    assert SemVer(1, 9, 0) < SemVer(1, 10, 0)
    assert SemVer(1, 10, 0) > SemVer(1, 9, 0)
    assert SemVer(2, 0, 0) > SemVer(1, 99, 99)
    assert SemVer(1, 0, 9) < SemVer(1, 0, 10)
    assert SemVer(1, 2, 3) <= SemVer(1, 2, 3) and SemVer(1, 2, 3) >= SemVer(1, 2, 3)
    assert SemVer(1, 2, 3) == SemVer.parse("v1.2.3")
    assert SemVer(1, 2, 3) != SemVer(1, 2, 4)
    shuffled = [SemVer(1, 10, 0), SemVer(0, 9, 9), SemVer(1, 9, 0), SemVer(1, 2, 10)]
    assert sorted(shuffled) == [
        SemVer(0, 9, 9),
        SemVer(1, 2, 10),
        SemVer(1, 9, 0),
        SemVer(1, 10, 0),
    ]
    assert max(shuffled) == SemVer(1, 10, 0)
    assert len({SemVer(1, 0, 0), SemVer.parse("v1.0.0")}) == 1  # hashable, equal values collapse


def test_semver_does_not_compare_with_strings() -> None:
    with pytest.raises(TypeError):
        _ = SemVer(1, 0, 0) < "v2.0.0"  # type: ignore[operator]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("bumpmajor", SemVer(2, 0, 0)),
        ("bumpminor", SemVer(1, 3, 0)),
        ("bumppatch", SemVer(1, 2, 4)),
        ("keep", SemVer(1, 2, 3)),
    ],
)
def test_semver_bump(policy: str, expected: SemVer) -> None:
    start = SemVer(1, 2, 3)
    assert start.bump(policy) == expected
    assert start == SemVer(1, 2, 3)  # frozen: bump returns a new value


def test_semver_bump_unknown_policy() -> None:
    with pytest.raises(ValueError, match="bumpmajor, bumpminor, bumppatch, keep"):
        SemVer(1, 0, 0).bump("bumpy")


# --------------------------------------------------------------------------------------------
# resolve_version against a real LocalStore
# --------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(root=tmp_path / "store")


def _make_dirs(store: LocalStore, experiment: str, *names: str) -> None:
    for name in names:
        (store.root / experiment / name).mkdir(parents=True)


@pytest.mark.parametrize("policy", POLICIES)
def test_first_run_is_v1_0_0_for_every_policy(store: LocalStore, policy: str) -> None:
    assert resolve_version(store, "exp", None, policy) == FIRST_VERSION == SemVer(1, 0, 0)


@pytest.mark.parametrize("policy", POLICIES)
def test_first_run_ignores_foreign_folders(store: LocalStore, policy: str) -> None:
    _make_dirs(store, "exp", "notes", "v1.2", "latest", "1.4.0")
    (store.root / "exp" / "v7.0.0").write_text("a file, not a folder")
    assert existing_versions(store, "exp") == []
    assert resolve_version(store, "exp", None, policy) == SemVer(1, 0, 0)


def test_first_run_still_validates_the_policy(store: LocalStore) -> None:
    with pytest.raises(ValueError, match="bumpy"):
        resolve_version(store, "exp", None, "bumpy")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("bumpmajor", "v2.0.0"),
        ("bumpminor", "v1.11.0"),
        ("bumppatch", "v1.10.1"),
        ("keep", "v1.10.0"),
    ],
)
def test_bumps_from_the_highest_existing_version(
    store: LocalStore, policy: str, expected: str
) -> None:
    # Lexically v1.9.0 > v1.10.0; numerically it is the other way round.
    _make_dirs(store, "exp", "v1.2.0", "v1.9.0", "v1.10.0", "v0.99.0", "notes", "v1.2", "latest")
    _make_dirs(store, "other_exp", "v9.0.0")  # another experiment's versions do not count
    assert existing_versions(store, "exp") == [
        SemVer(0, 99, 0),
        SemVer(1, 2, 0),
        SemVer(1, 9, 0),
        SemVer(1, 10, 0),
    ]
    assert str(resolve_version(store, "exp", None, policy)) == expected


def test_requested_policy_name_overrides_the_class_policy(store: LocalStore) -> None:
    _make_dirs(store, "exp", "v1.4.2")
    assert resolve_version(store, "exp", "bumpmajor", "keep") == SemVer(2, 0, 0)
    assert resolve_version(store, "exp", "bumppatch", "bumpmajor") == SemVer(1, 4, 3)
    with pytest.raises(ValueError):
        resolve_version(store, "exp", "nonsense", "bumpminor")


@pytest.mark.parametrize("requested", ["v2.3.4", "2.3.4", SemVer(2, 3, 4)])
def test_explicit_version_wins(store: LocalStore, requested: str | SemVer) -> None:
    _make_dirs(store, "exp", "v5.0.0")
    for policy in POLICIES:
        assert resolve_version(store, "exp", requested, policy) == SemVer(2, 3, 4)
    # Also on a first run, where no version exists yet.
    assert resolve_version(store, "fresh", requested, "bumpminor") == SemVer(2, 3, 4)


# --------------------------------------------------------------------------------------------
# claim_run_folder
# --------------------------------------------------------------------------------------------


def test_claim_run_folder_creates_the_manifest(store: LocalStore) -> None:
    layout = claim_run_folder(store, "exp", SemVer(1, 0, 0), b"placeholder")
    assert layout.experiment == "exp" and layout.version == SemVer(1, 0, 0)
    assert is_run_timestamp(layout.timestamp)
    assert store.get_bytes(layout.manifest) == b"placeholder"
    assert (store.root / "exp" / "v1.0.0" / layout.timestamp / "manifest.yml").is_file()


def test_claim_run_folder_in_a_tight_loop_gives_distinct_folders(store: LocalStore) -> None:
    layouts = [
        claim_run_folder(store, "exp", SemVer(1, 0, 0), f"run {i}".encode()) for i in range(5)
    ]
    stamps = [layout.timestamp for layout in layouts]
    assert len(set(stamps)) == 5
    for i, layout in enumerate(layouts):
        assert store.get_bytes(layout.manifest) == f"run {i}".encode()  # nobody overwritten
        assert is_run_timestamp(layout.timestamp)
        assert RunLayout.from_experiment_id(layout.experiment_id) == layout
    # Within one second the first claim is the bare stamp, then -2, -3, ... in call order.
    by_second: dict[str, list[str]] = {}
    for stamp in stamps:
        by_second.setdefault(stamp[:19], []).append(stamp)
    for second, group in by_second.items():
        assert group == [second] + [f"{second}-{n}" for n in range(2, len(group) + 1)]
    assert sorted(store.list_dirs("exp/v1.0.0")) == sorted(stamps)


def test_claim_run_folder_twice_in_the_same_second_adds_a_suffix(
    store: LocalStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FrozenClock(dt.datetime):
        @classmethod
        def now(cls, tz: dt.tzinfo | None = None) -> FrozenClock:
            return cls(2025, 3, 4, 5, 6, 7, tzinfo=tz)

    monkeypatch.setattr(layout_module, "dt", SimpleNamespace(datetime=FrozenClock, UTC=dt.UTC))
    first = claim_run_folder(store, "exp", SemVer(1, 0, 0), b"a")
    second = claim_run_folder(store, "exp", SemVer(1, 0, 0), b"b")
    third = claim_run_folder(store, "exp", SemVer(1, 0, 0), b"c")
    assert first.timestamp == "2025-03-04_05-06-07"
    assert second.timestamp == "2025-03-04_05-06-07-2"
    assert third.timestamp == "2025-03-04_05-06-07-3"
    assert [store.get_bytes(x.manifest) for x in (first, second, third)] == [b"a", b"b", b"c"]
    # Another version folder is independent of the first.
    other = claim_run_folder(store, "exp", SemVer(2, 0, 0), b"d")
    assert other.timestamp == "2025-03-04_05-06-07"


# --------------------------------------------------------------------------------------------
# RunLayout
# --------------------------------------------------------------------------------------------


def test_run_layout_keys_match_the_documented_layout() -> None:
    layout = RunLayout("simulate_energy", SemVer(1, 2, 3), "2025-01-02_03-04-05")
    root = "simulate_energy/v1.2.3/2025-01-02_03-04-05"
    assert layout.experiment_id == root
    assert layout.root == root
    assert layout.manifest == f"{root}/manifest.yml"
    assert layout.io_spec == f"{root}/experiment_io_spec.yml"
    assert layout.input_artifacts == f"{root}/input_artifacts.yml"
    assert layout.specs == f"{root}/specs.pq"
    assert layout.artifact("weather", "cold.csv") == f"{root}/artifacts/weather/cold.csv"
    assert layout.node_specs("root") == layout.specs  # the root's slice is the whole sweep
    assert layout.node_specs("root/3") == f"{root}/scatter-gather/input/root/3.pq"
    assert layout.node_done("root/3") == f"{root}/scatter-gather/output/root/3/_node.json"
    assert layout.journal_prefix("root/3") == f"{root}/scatter-gather/journal/root/3"
    assert layout.leaf_plan("root/3", "x") == f"{root}/scatter-gather/plan/root/3/x.json"
    assert layout.node_output("root", "scalars") == f"{root}/scatter-gather/output/root/scalars.pq"
    assert layout.node_output_prefix("root") == f"{root}/scatter-gather/output/root"
    assert layout.result_file("report", "leaf-7", ".pdf") == f"{root}/results/report/leaf-7.pdf"
    assert layout.leaf_dataframe("hourly", "leaf-7") == (
        f"{root}/results/dataframes/hourly/leaf-7.pq"
    )
    assert layout.final("scalars") == f"{root}/final/scalars.pq"
    assert layout.final("result_file_refs") == f"{root}/final/result_file_refs.pq"
    assert layout.final_prefix == f"{root}/final"
    assert layout.final_output == f"{root}/final/output.json"
    assert layout.key("a", "b.txt") == f"{root}/a/b.txt"


@pytest.mark.parametrize(
    "experiment_id",
    [
        "simulate_energy/v1.2.3/2025-01-02_03-04-05",
        "simulate_energy/v1.2.3/2025-01-02_03-04-05-2",
        "simulate_energy/v10.0.12/2025-12-31_23-59-59-117",
        "/simulate_energy/v1.0.0/2025-01-02_03-04-05/",
    ],
)
def test_from_experiment_id_round_trips(experiment_id: str) -> None:
    layout = RunLayout.from_experiment_id(experiment_id)
    assert layout.experiment == "simulate_energy"
    assert layout.experiment_id == experiment_id.strip("/")
    assert RunLayout.from_experiment_id(layout.experiment_id) == layout


def test_from_experiment_id_parses_the_parts() -> None:
    layout = RunLayout.from_experiment_id("exp/v1.10.0/2025-01-02_03-04-05-3")
    assert layout == RunLayout("exp", SemVer(1, 10, 0), "2025-01-02_03-04-05-3")


@pytest.mark.parametrize(
    "experiment_id",
    [
        "",
        "exp",
        "exp/v1.0.0",
        "v1.0.0/2025-01-02_03-04-05",
        "exp/1.0.0/2025-01-02_03-04-05",
        "exp/v1.0/2025-01-02_03-04-05",
        "exp/latest/2025-01-02_03-04-05",
        "exp/v1.0.0/yesterday",
        "exp/v1.0.0/2025-01-02",
        "exp/v1.0.0/2025-01-02_03-04-05/specs.pq",
        "exp/v1.0.0/2025-01-02_03-04-05-x",
    ],
)
def test_from_experiment_id_rejects_malformed_ids(experiment_id: str) -> None:
    with pytest.raises(ValueError, match="not a run folder id"):
        RunLayout.from_experiment_id(experiment_id)
