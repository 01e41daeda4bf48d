"""The key schema and record codec (crew_aio.keys): one module maps records to typed items."""

from __future__ import annotations

import orjson

from crew_aio import keys, store
from crew_aio.engine import Engine, TaskSpec
from crew_aio.model import Change, Loaded


def test_every_kind_of_record_decodes_to_typed_items() -> None:
    engine = Engine()
    group, _ = engine.create_group("g", 100.0)
    engine.create_tasks(group.id, [TaskSpec(name="t", channel="c", workgroup=7)], 100.0)
    engine.cool(7, 500.0)
    engine.remember(Change(), "idem", "group", (group.id,), "fp", 100.0)
    records = [
        *keys.records_of(engine),
        (keys.ID_MARK, {"last": engine.last_id}),
        (keys.CLOCK_MARK, {"now": 123.0}),
        (keys.idempotency_key("idem"), keys.remembered_record(engine.remembered["idem"])),
        ("m:something-newer", {"x": 1}),  # unknown kinds are ignored
    ]
    stored = [(k, orjson.dumps(v)) for k, v in records]
    loaded = keys.decode((k, v if k.startswith(keys.RAW) else orjson.loads(v)) for k, v in stored)
    assert isinstance(loaded, Loaded) and loaded.skipped == []
    assert [g.id for g in loaded.groups] == [group.id]
    assert [t.name for t in loaded.tasks] == ["t"]
    assert loaded.ids == [engine.last_id] and loaded.clock_mark == 123.0
    assert loaded.cooling == [(7, 500.0)]
    assert loaded.remembered["idem"].ids == (group.id,)
    fresh = Engine()
    assert fresh.load(loaded) == []
    assert list(keys.records_of(fresh)) == list(keys.records_of(engine))
    assert fresh.remembered["idem"] == engine.remembered["idem"]


def test_records_that_cannot_be_used_are_named() -> None:
    loaded = keys.decode([("g:x", {}), ("t:y", {"name": 1}), ("w:int:1", {"until": 5})])
    assert loaded.skipped == ["g:x", "t:y", "w:int:1"]


def test_cooling_keys_tell_types_apart_and_the_health_probe_is_the_stores() -> None:
    assert keys.cooling_key(1) != keys.cooling_key("1")
    assert keys.HEALTH == store.HEALTH
    assert keys.task_key("a") == "t:a" and keys.group_key("a") == "g:a"


def test_a_malformed_task_record_among_many_costs_only_itself() -> None:
    """Task records are decoded a chunk at a time; a bad one is found and skipped alone."""
    from crew_aio.keys import TASK, decode

    good = [(f"{TASK}{i:024x}", orjson.dumps({"_id": f"{i:024x}", "taskGroupId": "g" * 24,
                                              "name": f"t{i}", "channel": "c"}))
            for i in range(2500)]  # fmt: skip
    bad = [(f"{TASK}bad1", b'{"_id": 7}'), (f"{TASK}bad2", b"not json")]
    loaded = decode([*good[:1200], bad[0], *good[1200:], bad[1]])
    assert loaded.skipped == [f"{TASK}bad1", f"{TASK}bad2"]
    assert [t.id for t in loaded.tasks] == [f"{i:024x}" for i in range(2500)]


def test_loaded_tasks_share_the_values_they_repeat() -> None:
    """A million resident tasks hold one object per group id, channel and timestamp, and a
    parent's id, not a copy each (resident memory)."""
    from crew_aio.keys import TASK, decode

    def record(i: int, parents: list[int]) -> tuple[str, bytes]:
        ids = [f"{p:024x}" for p in parents]
        body = {"_id": f"{i:024x}", "taskGroupId": "g" * 24, "name": f"t{i}", "channel": "c",
                "createdAt": 1.5, "updatedAt": 2.5, "parentIds": ids}  # fmt: skip
        return f"{TASK}{i:024x}", orjson.dumps(body)

    loaded = decode([record(i, [i - 1] if i else []) for i in range(1500)])
    first, *rest = loaded.tasks
    for t in rest:
        assert t.group_id is first.group_id and t.channel is first.channel
        assert t.created_at is first.created_at and t.updated_at is first.updated_at
    by_id = {t.id: t for t in loaded.tasks}
    for t in rest:  # the parent was stored just before: within this chunk or the last one
        assert t.parent_ids[0] is by_id[t.parent_ids[0]].id
