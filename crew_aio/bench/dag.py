"""W2's DAG, shared by the bench and its worker processes."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]


def dag_specs(channel: str, continuation: bool, run_no: int = 0) -> list[Json]:
    """W2: a root, 100 children, 10 grandchildren each, and a join over the 1,000
    grandchildren (1,102 tasks). With ``continuation`` the list has no root: the root's release
    creates the rest. Grandchildren and the join carry ``mark`` inputs the workers time."""
    specs: list[Json] = []
    if not continuation:
        specs.append({"_child_id": "r", "name": "root", "channel": channel})
    up = {} if continuation else {"_parent_ids": ["r"]}
    grand = []
    for c in range(100):
        specs.append({"_child_id": f"c{c}", "name": f"c{c}", "channel": channel, **up})
        for g in range(10):
            grand.append(f"g{c}.{g}")
            mark = {"mark": "g", "run": run_no}
            specs.append({"_child_id": grand[-1], "name": grand[-1], "channel": channel,
                          "_parent_ids": [f"c{c}"], "input": mark})  # fmt: skip
    specs.append({"_child_id": "j", "name": "join", "channel": channel, "_parent_ids": grand,
                  "input": {"mark": "join", "run": run_no}})  # fmt: skip
    return specs
