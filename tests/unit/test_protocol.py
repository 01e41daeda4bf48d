"""protocol.nesting_path: the JSON depth limit, iterative at any depth."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from crew_aio.protocol import MAX_DEPTH, nesting_path


def arrays(depth: int) -> Any:
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize(
    "value", [None, 1, "x", [], {}, {"a": [1, {"b": None}]}, arrays(MAX_DEPTH)]
)
def test_within_the_limit(value: Any) -> None:
    assert nesting_path(value) is None


def test_one_level_over_names_the_path() -> None:
    def body(depth: int) -> dict[str, Any]:
        return {"name": "t", "input": {"a": [1, 2, {"b": arrays(depth)}]}}

    assert nesting_path(body(MAX_DEPTH - 4)) is None
    path = nesting_path(body(MAX_DEPTH - 3))
    assert path is not None and path[:4] == ["input", "a", 2, "b"] and len(path) == MAX_DEPTH


def test_the_first_deep_branch_is_reported() -> None:
    value = {"x": [1, 2, {}], "y": [[{"z": []}]], "w": arrays(10)}
    assert nesting_path(value, 3) == ["y", 0, 0]
    assert nesting_path(value, 4) == ["y", 0, 0, "z"]
    assert nesting_path(value, 11) is None


def test_orjsons_deepest_value_neither_recurses_nor_raises() -> None:
    deep = orjson.loads(b"[" * 1024 + b"]" * 1024)  # orjson's own limit
    path = nesting_path(deep)
    assert path == [0] * MAX_DEPTH
    assert nesting_path(deep, 1024) is None


def test_wide_values_are_fine() -> None:
    assert nesting_path([{"a": [i]} for i in range(100_000)]) is None
