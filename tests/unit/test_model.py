"""The record and API forms of the model."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from crew_aio.model import Task, format_time, task_from_json, task_from_record, task_to_record


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_format_time_matches_datetime(when: float) -> None:
    expected = datetime.fromtimestamp(when, UTC).isoformat(timespec="milliseconds")
    assert format_time(when) == expected.replace("+00:00", "Z")


def test_format_time_examples() -> None:
    assert format_time(None) is None
    assert format_time(1_800_000_000.0) == "2027-01-15T08:00:00.000Z"
    assert format_time(1_800_000_000.9999996) == "2027-01-15T08:00:01.000Z"


def test_record_round_trip_keeps_every_persisted_field_and_no_runtime_one() -> None:
    import orjson

    task = Task("a", "g", "n", "c", workgroup="w", key="k", remaining_attempts=2, max_attempts=3,
                is_paused=True, priority=-4, run_after=5.5, progress_weight=2.5, is_seed=True,
                error_delay=0.0, input={"x": [1]}, output=0, errors=["e"], created_at=1.0,
                updated_at=2.0, completed_at=None, parent_ids=("p",), assigned_to="w1",
                assigned_at=3.0, lease_id="L", lease_expires_at=4.0, children=["z"],
                pending_parents=7, queued=True)  # fmt: skip
    record = task_to_record(task)
    assert "children" not in record and "pendingParents" not in record and "queued" not in record
    for back in (task_from_record(record), task_from_json(orjson.dumps(record))):
        assert task_to_record(back) == record
        assert back.children is None and back.pending_parents == 0 and not back.queued
    assert task_to_record(Task("b", "g", "n", "c")) == {
        "_id": "b", "taskGroupId": "g", "name": "n", "channel": "c", "createdAt": 0.0,
        "updatedAt": 0.0,
    }  # fmt: skip
