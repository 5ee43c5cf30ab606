"""bench/cloud_flow.py runs tiny and prints its figures, its stage breakdown and the cloud/local
ratios: a smoke test of the script, no figure checked but the counts (none lost, none duplicated)."""

from __future__ import annotations

import os
import re

import pytest

from agentfleet.testing.emulators import emulators_available
from tests.benches import run_bench

FLOW = re.compile(r"^(cloud|local) +lost +0  duplicate executions +0  ready→dispatch p50 +[\d.]+ ms  p99 +[\d.]+ ms")
STAGES = ["handoff", "push", "claim", "busy", "total"]


def test_the_bench_prints_both_flows_the_cloud_stages_and_the_ratios() -> None:
    why = emulators_available()
    if why is not None:
        if os.environ.get("AGENTFLEET_REQUIRE_EMULATORS") == "1":
            pytest.fail(f"AGENTFLEET_REQUIRE_EMULATORS=1 but {why}")
        pytest.skip(why)
    # Three tasks over two repositories: the third waits for the first, so one is handed over.
    lines = run_bench("cloud_flow.py", "--tasks", "3", "--repos", "2", "--timeout", "300", timeout_s=900)
    output = "\n".join(lines)
    assert [m[1] for line in lines if (m := FLOW.match(line))] == ["cloud", "local"], output
    stages = [line.split()[0] for line in lines if re.match(r"^  \S.* p50 +[\d.]+  p99 +[\d.]+  mean over", line)]
    assert stages == STAGES, output
    assert any(line.startswith("  agent: DISPATCHED→RUNNING median") for line in lines), output
    assert any(re.match(r"^cloud/local: p50 x([\d.]+|-)  p99 x([\d.]+|-)  wall x[\d.]+$", line) for line in lines), (
        output
    )
