"""The cell benchmark's table (bench/launch.py --cell): per-round ratios of the cell to the
single-region launch run next to it, and their median."""

from __future__ import annotations

from typing import Any

from bench.launch import _cell_table


def row(tool: str, round_: int, p99: float, cpu: float, rate: float, gen: float) -> dict[str, Any]:
    return {
        "tool": tool,
        "concurrency": 16,
        "round": round_,
        "launches_per_s": rate,
        "ms": {"launch": {50: 1.0, 95: 1.0, 99: p99}},
        "cpu_ms_per_launch": {"launch": cpu / 2, "login": cpu / 2, "generator": gen},
    }


def test_each_round_compares_the_cell_with_its_own_single_region_run() -> None:
    rows = [
        row("attune", 1, 20.0, 0.8, 500, 0.8),
        row("attune-cell", 1, 22.0, 0.88, 450, 0.8),
        row("attune-cell", 2, 30.0, 0.9, 500, 1.0),  # ABBA: the cell first in round 2
        row("attune", 2, 20.0, 1.0, 500, 1.0),
        row("attune", 3, 10.0, 1.0, 500, 1.0),
        row("attune-cell", 3, 10.0, 1.0, 500, 1.0),
    ]
    lines = _cell_table(rows)
    assert lines[3:] == [
        "| 16 | 1 | 1.10x | 1.10x | 0.90x | 1.00x |",
        "| 16 | 2 | 1.50x | 0.90x | 1.00x | 1.00x |",
        "| 16 | 3 | 1.00x | 1.00x | 1.00x | 1.00x |",
        "| 16 | **median** | **1.10x** | **1.00x** | **1.00x** | **1.00x** |",
    ]
