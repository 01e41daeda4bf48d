"""The record and API forms of the model."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from crew_aio.model import (
    Task,
    format_time,
    task_from_json,
    task_from_record,
    task_to_record,
    task_to_record_reference,
)


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
                parents_complete=True, priority=-4, run_after=5.5, progress_weight=2.5,
                is_seed=True, error_delay=0.0, input={"x": [1]}, output=0, errors=("e",),
                created_at=1.0, updated_at=2.0, completed_at=None, parent_ids=("p",),
                assigned_to="w1", assigned_at=3.0, lease_id="L", lease_expires_at=4.0,
                held_by="w0", held_lease="K", children=["z"], pending_parents=7,
                queued=True)  # fmt: skip
    record = task_to_record(task)
    assert "children" not in record and "pendingParents" not in record and "queued" not in record
    for back in (task_from_record(record), task_from_json(orjson.dumps(record))):
        assert task_to_record(back) == record
        assert back.children is None and back.pending_parents == 0 and not back.queued
    assert task_to_record(Task("b", "g", "n", "c")) == {
        "_id": "b", "taskGroupId": "g", "name": "n", "channel": "c", "createdAt": 0.0,
        "updatedAt": 0.0,
    }  # fmt: skip


def test_numbers_keep_their_json_type_through_a_record() -> None:
    """Crew stores what it was sent: a numeric key stays a number, 1 stays 1 (not 1.0)."""
    import orjson

    task = Task("a", "g", 7, "c", workgroup=12345, key=2.5, priority=1.5, progress_weight=3,
                error_delay=0)  # fmt: skip
    back = task_from_json(orjson.dumps(task_to_record(task)))
    assert (back.name, back.workgroup, back.key) == (7, 12345, 2.5)
    assert type(back.progress_weight) is int and type(back.error_delay) is int
    assert type(Task("b", "g", "n", "c").progress_weight) is int


_maybe = st.none() | st.text(max_size=3)
_times = st.none() | st.floats(0, 4e9)


@given(
    st.builds(
        Task,
        id=st.text(min_size=1, max_size=3),
        group_id=st.just("g"),
        name=st.text(max_size=3) | st.integers(0, 3),
        channel=st.just("c"),
        workgroup=_maybe | st.integers(0, 2),
        key=_maybe | st.integers(0, 2),
        remaining_attempts=st.integers(0, 6),
        max_attempts=st.integers(0, 6),
        is_complete=st.booleans(),
        parents_complete=st.booleans(),
        priority=st.integers(-1, 1) | st.sampled_from([0.0, 0.5]),
        run_after=_times,
        progress_weight=st.sampled_from([0, 1, 0.0, 1.0, 2.5]),
        is_seed=st.booleans(),
        error_delay=st.sampled_from([0, 30, 0.0, 30.0, 1.5]),
        input=st.none() | st.integers() | st.dictionaries(st.text(max_size=2), st.integers()),
        output=st.none() | st.just(0) | st.lists(st.integers(), max_size=2),
        errors=st.lists(st.text(max_size=2), max_size=2).map(tuple),
        created_at=st.floats(0, 4e9),
        updated_at=st.floats(0, 4e9),
        completed_at=_times,
        parent_ids=st.lists(st.text(max_size=2), max_size=2).map(tuple),
        assigned_to=_maybe,
        assigned_at=_times,
        lease_id=_maybe,
        lease_expires_at=_times,
        held_by=_maybe,
        held_lease=_maybe,
        children=st.none() | st.lists(st.text(max_size=2), max_size=2),
        pending_parents=st.integers(0, 2),
        queued=st.booleans(),
    )
)
def test_the_spelled_out_record_matches_the_field_table(task: Task) -> None:
    assert task_to_record(task) == task_to_record_reference(task)
