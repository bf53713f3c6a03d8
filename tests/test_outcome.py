"""LeafOutcome crosses process and JSON boundaries: every field must survive both unchanged."""

from __future__ import annotations

import dataclasses
import pickle

from scythe_oo.outcome import OUTCOME, LeafOutcome


def every_field_set() -> LeafOutcome:
    return LeafOutcome(
        sort_index=41,
        leaf_id="leaf-41",
        ok=False,
        scalars={"y": 2.5, "n": 3},
        file_refs={"report": "file:///r.csv", "missing": None},
        dataframes={"hourly": "runs/x/df/hourly/41.pq"},
        error_type="ValueError",
        error_message="bad input",
        traceback="Traceback ...",
        attempts=3,
        worker="local-host-123",
        wall_time=0.125,
    )


def test_pickle_round_trip_keeps_every_field() -> None:
    outcome = every_field_set()
    restored = pickle.loads(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    assert dataclasses.asdict(restored) == dataclasses.asdict(outcome)
    # distinct values per field, so a reordered __reduce__ could not pass by accident
    values = [repr(v) for v in dataclasses.astuple(outcome)]
    assert len(set(values)) == len(values)


def test_journal_json_round_trip_keeps_every_field() -> None:
    outcome = every_field_set()
    restored = OUTCOME.validate_json(OUTCOME.dump_json(outcome))
    assert restored == outcome
