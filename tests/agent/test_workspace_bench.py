"""bench/warm_workspace.py runs and prints its table: a smoke test of the script, no figure checked."""

from __future__ import annotations

from tests.benches import run_bench

ROWS = [
    "baseline: git clone --no-local",
    "git clone of the local path (hardlinks)",
    "first task (mirror, checkout, chown)",
    "second task (fetch, reuse, chown)",
    "git fetch + checkout in the plain clone",
    "third task, nothing new upstream",
]
RATIOS = [
    "first / clone",
    "first / local clone",
    "second / first",
    "second / plain fetch + checkout",
    "third (nothing new) / first",
]


def test_the_bench_prints_the_clone_baseline_both_tasks_and_their_ratios() -> None:
    args = ["--commits", "5", "--files", "3", "--rounds", "2", "--agent-seconds", "0"]
    lines = run_bench("warm_workspace.py", *args, timeout_s=120)
    assert lines[0] == "repository: 5 commits, 3 files, 100 to a folder; 2 rounds, interleaved"
    rows = [(line[:46].strip(), line[46:].split()) for line in lines[1:]]
    for kind, part in (("wall", rows[:12]), ("cpu", rows[12:])):
        assert [label for label, _ in part] == [f"{kind} ms", *ROWS, *(f"{kind} {r}" for r in RATIOS)]
        assert part[0][1] == ["min", "median", "max"]
        for label, values in part[1:]:
            low, mid, high = (float(v) for v in values)
            assert 0 < low <= mid <= high, (label, values)
