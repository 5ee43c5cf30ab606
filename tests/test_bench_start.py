"""bench/dispatch_latency.py and bench/task_memory.py run and print their tables: smoke tests of the
scripts with one task, the shape of their output checked, no figure compared with a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(name: str, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / name), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()


def test_the_dispatch_bench_prints_both_agents_beside_the_baseline_with_their_ratios() -> None:
    lines = bench("dispatch_latency.py", "--tasks", "1", "--rounds", "1")
    rows = {
        label: line for line in lines for label in ("warm launcher", "fresh interpreter", "baseline:") if label in line
    }
    assert set(rows) == {"warm launcher", "fresh interpreter", "baseline:"}, lines
    for line in rows.values():
        cells = line.split()
        ratio = next(c for c in cells if c.startswith("x"))
        assert float(ratio[1:]) > 0
    assert "x1.00" in rows["baseline:"], "the baseline is its own unit"
    assert any("publish → dispatch" in line for line in lines)


def test_the_memory_bench_prints_rss_pss_and_uss_for_both_agents_and_a_bare_interpreter() -> None:
    lines = bench("task_memory.py", "--rounds", "1")
    rows = [line for line in lines if "rss" in line and "pss" in line and "uss" in line]
    assert len(rows) == 3, lines
    for line in rows:
        cells = line.split()
        rss = float(cells[cells.index("rss") + 1])
        uss = float(cells[cells.index("uss") + 1])
        assert rss >= uss > 0, line
