"""``benchmarks.race``'s arithmetic: each target is this run's ratio, and the README's Sizing
section is rewritten between its markers only (the race itself needs Redis and BullMQ: it is a
benchmark, run by hand)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.race import END, START, combined, targets, write_readme

PEERS: list[dict[str, Any]] = [
    {"name": "BullMQ", "key": "bullmq", "w1_rate": 10_000.0, "w2_wall_s": 0.30},
    {"name": "RedisHuey", "key": "redis-huey", "w1_rate": 6_000.0, "w2_wall_s": 0.25},
]


def crew(**ws: Any) -> dict[str, Any]:
    rows = [
        {"shape": "ws", "label": "WS", "w1_rate": 13_000.0, "w2_wall_s": 0.2, "w3_p50_ms": 0.9,
         "w3_p99_ms": 2.0, "w2_join_lag_ms": 3.0} | ws,
        {"shape": "poll", "label": "poll", "w1_rate": 6_000.0},
        {"shape": "crew", "label": "crew", "w1_rate": 1_000.0, "server_cpu_ms_per_task": 0.5},
    ]  # fmt: skip
    return {"rows": rows, "scale": {"w1_rate": 11_000.0, "rss_mib": 900, "restart_s": 4.0}}


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    return {name: ok for name, _, ok in targets(PEERS, result)}


def test_each_target_is_a_ratio_of_this_run() -> None:
    got = verdicts(crew())
    assert got["1. W1, WebSocket with SDK defaults >= 1.25x BullMQ"]  # 1.3x
    assert got["1. W2 wall, SDK defaults <= 0.75x BullMQ"]  # 0.67x
    assert not got["2. W1, Crew's REST protocol >= 0.75x RedisHuey"]
    assert not got["2. server CPU per REST request <= 80 us"]  # 250 us a request
    assert got["3. W1, SDK --poll >= 1x RedisHuey"]
    assert got["4. pickup p50 <= 1 ms"] and got["4. pickup p99 <= 3 ms"]
    assert not got["4. W2 join lag <= 1 ms"]
    assert got["5. W1 with 1M resident within 20 % of W1"]  # 0.85x
    assert got["5. RSS with 1M tasks <= 1 GiB"] and not got["5. restart to listening <= 3 s"]
    slower = verdicts(crew(w1_rate=12_000.0))  # 1.2x BullMQ
    assert not slower["1. W1, WebSocket with SDK defaults >= 1.25x BullMQ"]


def test_a_figure_not_measured_is_a_miss_not_a_crash() -> None:
    result = crew()
    del result["rows"][0]["w3_p50_ms"]
    rows = {name: (figure, ok) for name, figure, ok in targets(PEERS, result)}
    assert rows["4. pickup p50 <= 1 ms"] == ("not measured", False)
    assert "| - |" in combined(PEERS, {"rows": result["rows"][:1]})  # a cell, not a crash


def test_the_readme_is_rewritten_between_its_markers_only(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\nbefore\n{START}\nold table\n{END}\nafter\n")
    write_readme(readme, "new table")
    assert readme.read_text() == f"# x\nbefore\n{START}\nnew table\n{END}\nafter\n"
    (tmp_path / "other.md").write_text("no markers")
    with pytest.raises(SystemExit):
        write_readme(tmp_path / "other.md", "x")
