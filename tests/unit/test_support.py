"""tests.support.wait: bounded polls that say what never held."""

from __future__ import annotations

import itertools

import pytest

from tests.support.wait import eventually, wait_until


def test_wait_until_returns_the_first_truthy_value() -> None:
    count = itertools.count()
    assert wait_until(lambda: next(count) >= 3 and "done", 1, 0) == "done"


def test_wait_until_names_what_never_held() -> None:
    never_true: list[int] = []
    with pytest.raises(
        AssertionError, match=r"within 0.05 s: .*lambda: never_true.*\(last: \[\]\)"
    ):
        wait_until(lambda: never_true, 0.05, 0.01)
    with pytest.raises(AssertionError, match="the thing held not"):
        wait_until(lambda: 0, 0.05, 0.01, what="the thing held not")


def test_wait_until_ignores_only_the_errors_it_is_told() -> None:
    attempts = itertools.count()

    def flaky() -> bool:
        if next(attempts) < 2:
            raise ConnectionError("down")
        return True

    assert wait_until(flaky, 1, 0, ignore=(ConnectionError,)) is True

    def down() -> bool:
        raise ConnectionError("refused")

    with pytest.raises(AssertionError, match=r"down \(last: ConnectionError\('refused'\)\)"):
        wait_until(down, 0.05, 0.01, ignore=(OSError,))
    with pytest.raises(KeyError):
        wait_until(lambda: {"y": 1}["x"], 1, 0, ignore=(OSError,))


async def test_eventually_awaits_coroutine_and_plain_checks() -> None:
    count = itertools.count()

    async def ready() -> int:
        return next(count) >= 2 and 7

    assert await eventually(ready, 1, 0) == 7
    assert await eventually(lambda: next(count) > 5, 1, 0) is True

    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match=r"not true within 0.05 s: .*never \(last: False\)"):
        await eventually(never, 0.05, 0.01)
