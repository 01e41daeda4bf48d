"""The key schema and record codec (crew_aio.keys): one module maps records to typed items."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from crew_aio import keys, store
from crew_aio.commit import Chunk
from crew_aio.engine import Engine, TaskSpec
from crew_aio.model import Change, Loaded
from tests.unit.conftest import T0, create, new_group


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


def _task(i: int, parents: list[int] = [], **more: object) -> tuple[str, bytes]:  # noqa: B006
    body = {"_id": f"{i:024x}", "taskGroupId": "g" * 24, "name": f"t{i}", "channel": "c",
            "createdAt": 1.5, "updatedAt": 2.5, "parentIds": [f"{p:024x}" for p in parents],
            **more}  # fmt: skip
    return f"{keys.TASK}{i:024x}", orjson.dumps(body)


def _stored(*records: tuple[str, bytes]) -> store.MemoryStore:
    group = {"_id": "g" * 24, "name": "g", "isPaused": False, "createdAt": 1.0, "updatedAt": 1.0}
    return store.MemoryStore({keys.group_key("g" * 24): orjson.dumps(group), **dict(records)})


def _load(
    stored: store.MemoryStore, chunks: Iterable[Chunk] | None = None
) -> tuple[Engine, list[str]]:
    engine = Engine()
    given = stored.chunks(keys.RAW, size=1000) if chunks is None else chunks
    skipped = keys.load_into(engine, stored.load(raw=keys.RAW), given)
    return engine, skipped


def test_a_malformed_task_record_among_many_costs_only_itself() -> None:
    """Task records are decoded a chunk at a time; a bad one is found and skipped alone."""
    good = [_task(i) for i in range(2500)]
    bad = [(f"{keys.TASK}{'b' * 23}1", b'{"_id": 7}'), (f"{keys.TASK}{'b' * 23}2", b"not json"),
           (f"{keys.TASK}{'b' * 23}3", _task(3000)[1] + b"," + _task(3001)[1])]  # fmt: skip
    engine, skipped = _load(_stored(*good, *bad))
    assert skipped == [key for key, _ in bad]
    assert list(engine.tasks) == [f"{i:024x}" for i in range(2500)]


def test_loaded_tasks_share_the_values_they_repeat() -> None:
    """A million resident tasks hold one object per group id, channel and timestamp, and a
    parent's id, not a copy each (resident memory)."""
    engine, skipped = _load(_stored(*[_task(i, [i - 1] if i else []) for i in range(2500)]))
    assert skipped == []
    first, *rest = engine.tasks.values()
    for t in rest:
        assert t.group_id is first.group_id and t.channel is first.channel
        assert t.created_at is first.created_at and t.updated_at is first.updated_at
        assert t.parent_ids[0] is engine.tasks[t.parent_ids[0]].id  # across chunks too


def test_a_load_out_of_order_or_with_a_later_parent_is_the_running_engine() -> None:
    """Chunks out of id order (a store that does not sort) and a task whose edit made a later
    task its parent: the loaded engine is the one that was running."""
    engine = Engine()
    gid = new_group(engine)
    a, b, c, d = create(engine, gid, *[TaskSpec(name=n, channel="c") for n in "abcd"])
    engine.update_task(a.id, {"parentIds": [c.id]}, T0)  # a waits for c, created after it
    engine.update_task(b.id, {"parentIds": [c.id, d.id]}, T0)
    stored = store.MemoryStore({k: orjson.dumps(v) for k, v in keys.records_of(engine)})
    for chunks in (stored.chunks(keys.RAW, size=1), reversed(list(stored.chunks(keys.RAW, 1)))):
        fresh, skipped = _load(stored, chunks)
        assert skipped == []
        assert list(keys.records_of(fresh)) == list(keys.records_of(engine))
        assert list(fresh.tasks) == [a.id, b.id, c.id, d.id]
        assert list(fresh.group_tasks[gid]) == list(engine.group_tasks[gid])
        assert list(fresh.channel_tasks["c"]) == list(engine.channel_tasks["c"])
        assert sorted(fresh.tasks[c.id].children or ()) == [a.id, b.id]  # order: no meaning
        assert fresh.tasks[b.id].pending_parents == 2
        got, _ = fresh.acquire("c", "w", T0, 60.0, 10)
        assert sorted(t.id for t in got) == sorted([c.id, d.id])


def test_two_records_of_one_task_or_a_task_without_its_group_are_skipped() -> None:
    twin = (f"{keys.TASK}{'f' * 24}", _task(1)[1])  # another key, the same task
    orphan = _task(2, taskGroupId="e" * 24)
    engine, skipped = _load(_stored(_task(1), twin, orphan))
    assert list(engine.tasks) == [f"{1:024x}"]
    assert sorted(skipped) == [keys.task_key(f"{i:024x}") for i in (1, 2)]  # named by task
