"""bench/intake.py runs tiny and prints its table and ratios: a smoke test of the script, no figure checked."""

from __future__ import annotations

import os
import re

from agentfleet.testing.emulators import emulators_available
from tests.benches import run_bench

LOCAL = ["functions-framework 202", "werkzeug 202", "agentfleet serve"]
TINY = ["--clients", "2", "--requests", "6", "--rounds", "2"]
SPREAD = r"[0-9.]+/[0-9.]+/[0-9.]+"


def bench(*args: str) -> list[str]:
    return run_bench("intake.py", *TINY, *args)


def rows(lines: list[str]) -> dict[str, list[str]]:
    """target name → its figures (req/s spread, p50, p99, non-202, server and emulators' CPU ms per request)."""
    found = {}
    for line in lines:
        match = re.fullmatch(
            rf"  (.+?)\s+({SPREAD})\s+([0-9.]+)\s+([0-9.]+)\s+([0-9]+)\s+([0-9.]+)\s+([0-9.]+|-)", line
        )
        if match:
            found[match[1]] = list(match.groups()[1:])
    return found


def test_the_bench_measures_every_target_in_rounds_and_prints_its_ratio_to_functions_framework() -> None:
    cloud = emulators_available() is None or os.environ.get("AGENTFLEET_REQUIRE_EMULATORS") == "1"
    lines = bench() if cloud else bench("--no-cloud")

    assert lines[0] == "POST /orchestrate, 2 clients, 6 requests per target per round, 2 rounds interleaved"
    targets = [*LOCAL, "orchestrate function"] if cloud else LOCAL
    figures = rows(lines)
    assert list(figures) == targets, lines
    for name, (spread, p50, p99, errors, cpu, emulators) in figures.items():
        low, median, high = (float(v) for v in spread.split("/"))
        assert 0 < low <= median <= high and 0 < float(p50) <= float(p99), (name, lines)
        assert errors == "0", (name, lines)
        assert float(cpu) >= 0 and (emulators != "-") == (name == "orchestrate function"), (name, lines)
    ratios = [line for line in lines if re.fullmatch(rf"  .+ / functions-framework 202: req/s x{SPREAD} .*", line)]
    assert len(ratios) == len(targets) - 1, lines
    if not cloud:
        assert "  orchestrate function skipped: --no-cloud" in lines
    assert "  agents the server left running, stopped: 1 (one expected)" in lines
