"""bench/step_overhead.py runs and prints its rows and ratios: a smoke test of the script, no
figure checked (no test asserts a time)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.benches import run_bench

ROOT = Path(__file__).resolve().parents[1]
OURS = ["subprocess.run", "minimal bwrap", "sandbox per command", "sandbox session"]
OURS += ["agent, scripted model", "agent, scripted, session", "agent, HTTP model", "work_task, HTTP model"]
MINI = ["mini, deterministic", "mini, litellm HTTP"]


def bench(*args: str) -> list[str]:
    return run_bench("step_overhead.py", "--steps", "2", "--rounds", "1", *args, timeout_s=600)


def rows(lines: list[str]) -> dict[str, list[float]]:
    """Each row's name and its min, median and max."""
    found = {}
    for line in lines:
        if match := re.fullmatch(r"\s+(.+?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)", line):
            found[match[1]] = [float(v) for v in match.groups()[1:]]
    return found


def test_the_bench_prints_every_way_and_the_ratios_against_minimal_bwrap() -> None:
    lines = bench("--no-mini")
    assert lines[0] == "2 steps, 1 interleaved rounds; ms per step: min median max"
    found = rows(lines)
    assert [name for name in found if " / " not in name] == OURS
    assert "agent, HTTP model / minimal bwrap" in found and "agent, scripted model / minimal bwrap" in found
    assert "agent, scripted model / agent, scripted, session" in found
    assert all(low == mid == high > 0 for low, mid, high in found.values())  # one round
    assert lines[-1].startswith("load: ")


def test_the_bench_runs_mini_swe_agent_both_ways_and_prints_the_ratios_against_it() -> None:
    if not (ROOT / ".venv-bench" / "bin" / "python").exists():
        why = "no .venv-bench: `make bench-venv` installs it"
        if os.environ.get("AGENTFLEET_REQUIRE_BENCH_VENV") == "1":  # CI installs it
            pytest.fail(f"AGENTFLEET_REQUIRE_BENCH_VENV=1 but {why}")
        pytest.skip(why)
    found = rows(bench())
    assert [name for name in found if " / " not in name] == OURS + MINI
    assert {"agent, scripted model / mini, deterministic", "agent, HTTP model / mini, litellm HTTP"} <= set(found)
