"""The SDK's adaptive prefetch: lease ahead only while recent executes are short."""

from __future__ import annotations

from crew_aio.worker.prefetch import MAX, Prefetch


def test_a_pinned_prefetch_never_moves() -> None:
    fixed = Prefetch(concurrency=2, fixed=5)
    assert fixed.capacity == 7
    assert not any(fixed.executed(s) for s in (0.0001, 10.0, 0.0))
    assert fixed.value == 5


def test_adaptive_starts_at_none_and_grows_to_the_cap_on_short_executes() -> None:
    pf = Prefetch(concurrency=2, fixed=None)
    assert pf.value == 0 and pf.capacity == 2  # the first task might be long
    assert pf.executed(0.00001)
    assert pf.value == MAX and pf.capacity == 2 + MAX
    assert not pf.executed(0.000012)  # small wobbles send nothing


def test_long_executes_bring_it_to_none_within_a_few_tasks() -> None:
    pf = Prefetch(concurrency=2, fixed=None)
    pf.executed(0.0001)
    changes = [pf.executed(1.0) for _ in range(5)]
    assert pf.value == 0 and changes[0]  # one 1 s task is enough (mean 0.2 s)


def test_it_sizes_the_queue_to_about_twenty_ms_of_work() -> None:
    pf = Prefetch(concurrency=2, fixed=None)
    for _ in range(40):
        pf.executed(0.010)
    assert pf.value == 4  # 2 slots x 20 ms / 10 ms
    pf4 = Prefetch(concurrency=8, fixed=None)
    for _ in range(40):
        pf4.executed(0.010)
    assert pf4.value == 16


def test_only_big_moves_are_told() -> None:
    pf = Prefetch(concurrency=2, fixed=None)
    for _ in range(40):
        pf.executed(0.004)  # target 10
    assert pf.value == 10
    assert not pf.executed(0.0045)  # target 8: not halved, not doubled
    assert pf.value == 10
