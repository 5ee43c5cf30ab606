"""bench/mcp_transport.py runs and prints its table: a smoke test of the script, no figure checked."""

from __future__ import annotations

from pathlib import Path

from tests.benches import run_bench

COLUMNS = ["server", "tool", "stdio", "p50", "p90", "http", "p50", "p90", "http/stdio", "rounds"]
COLUMNS += ["start", "stdio", "start", "http"]


def bench(*args: str, env: dict[str, str] | None = None) -> list[str]:
    return run_bench("mcp_transport.py", *args, timeout_s=120, env=env)


def test_the_bench_prints_both_transports_and_their_ratio_for_the_workspace_server() -> None:
    lines = bench("--only", "workspace", "--calls", "2", "--rounds", "1")
    assert [line.split() for line in lines if line.split()[:1] == ["server"]] == [COLUMNS]
    (row,) = [line.split() for line in lines if line.split()[:1] == ["workspace"]]
    assert row[1] == "read_file" and len(row) == 10, row
    stdio_p50, stdio_p90, http_p50, http_p90, ratio, rounds, start_stdio, start_http = row[2:]
    assert all(float(v) > 0 for v in (stdio_p50, stdio_p90, http_p50, http_p90, start_stdio, start_http))
    assert float(stdio_p90) >= float(stdio_p50) and float(http_p90) >= float(http_p50)
    low, high = (float(v) for v in rounds.split("-"))
    assert ratio.startswith("x") and low <= float(ratio[1:]) <= high  # one round: its ratio is the ratio


def test_a_server_whose_binary_is_missing_is_reported_skipped_with_how_to_install_it(tmp_path: Path) -> None:
    lines = bench("--only", "genmedia", "--calls", "2", "--rounds", "1", env={"PATH": str(tmp_path)})
    assert "  genmedia        skipped: dot is not installed (apt-get install graphviz, or make system-deps)" in lines
