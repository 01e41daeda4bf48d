"""``crew-aio bench``'s figures as a Markdown table (with the scale run and the machine)."""

from __future__ import annotations

from typing import Any, Final

__all__ = ["COLUMNS", "table"]

Json = dict[str, Any]

COLUMNS: Final = (
    ("w1_rate", "W1 tasks/s", "{:,.0f}"),
    ("w1_enqueue_rate", "W1 enqueue/s", "{:,.0f}"),
    ("w2_wall_s", "W2 wall s", "{:.3f}"),
    ("w2_continuation_wall_s", "W2 cont. s", "{:.3f}"),
    ("w2_join_lag_ms", "join lag ms", "{:.2f}"),
    ("w3_p50_ms", "pickup p50 ms", "{:.2f}"),
    ("w3_p99_ms", "pickup p99 ms", "{:.2f}"),
    ("server_cpu_ms_per_task", "server CPU ms/task", "{:.3f}"),
    ("long_makespan_s", "long tasks s", "{:.3f}"),
    ("long_ideal_s", "long tasks, lower bound s", "{:.3f}"),
)


def table(result: Json) -> str:
    """The figures as a Markdown table (plus the scale run and the machine)."""
    rows = result["rows"]
    head = "| workload | " + " | ".join(r["label"] for r in rows) + " |"
    lines = [head, "|---|" + "---|" * len(rows)]
    for key, name, fmt in COLUMNS:
        if any(key in r for r in rows):
            cells = [fmt.format(r[key]) if key in r else "-" for r in rows]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    scale = result.get("scale")
    if scale:
        lines.append("")
        parts = [f"{scale['tasks']:,} tasks resident (created at {scale['fill_rate']:,}/s): "
                 f"W1 {scale['w1_rate']:,} tasks/s"]  # fmt: skip
        if "w1_ratio_to_20k" in scale:
            parts.append(f"{scale['w1_ratio_to_20k']:.0%} of the W1 above")
        if "rss_mib" in scale:
            parts.append(f"server RSS {scale['rss_mib']:,} MiB")
            parts.append(f"restart to listening {scale['restart_s']:.2f} s "
                         f"(RSS then {scale['rss_after_restart_mib']:,} MiB)")  # fmt: skip
        lines.append("Scale: " + "; ".join(parts) + ".")
    m = result["machine"]
    lines.append("")
    lines.append(f"Machine: {m['cpus']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}; "
                 f"one SQLite commit (WAL, synchronous=FULL): {m['commit_ms']:.3f} ms. "
                 f"{result['options']['procs']} worker processes x concurrency "
                 f"{result['options']['concurrency']}, no-op tasks.")  # fmt: skip
    return "\n".join(lines)
