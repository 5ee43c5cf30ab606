"""Running a `bench/` script from its smoke test: tiny arguments, its output's lines back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_bench(script: str, *args: str, timeout_s: int = 300, env: dict[str, str] | None = None) -> list[str]:
    """The lines `bench/<script> args` printed; a failing run fails the test with its output."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout.splitlines()
