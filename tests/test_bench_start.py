"""bench/dispatch_latency.py and bench/task_memory.py run and print their tables: smoke tests of the
scripts with one task, the shape of their output checked, no figure compared with a time."""

from __future__ import annotations

from tests.benches import run_bench


def test_the_dispatch_bench_prints_both_agents_beside_the_baseline_with_their_ratios() -> None:
    lines = run_bench("dispatch_latency.py", "--tasks", "1", "--rounds", "1")
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
    lines = run_bench("task_memory.py", "--rounds", "1")
    rows = [line for line in lines if "rss" in line and "pss" in line and "uss" in line]
    assert len(rows) == 3, lines
    for line in rows:
        cells = line.split()
        rss = float(cells[cells.index("rss") + 1])
        uss = float(cells[cells.index("uss") + 1])
        assert rss >= uss > 0, line
