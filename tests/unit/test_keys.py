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
