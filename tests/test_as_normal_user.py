"""The attack tests once more as a normal user, where the suite runs as root (as in a container).

As root the sandbox drops to the unprivileged sandbox user; as any other user bwrap makes a user
namespace instead and nothing is dropped: the planted git programs, the cancelled commands, the
limits and the listings must hold both ways. This runs those test files under `setpriv` as
nobody, with the system's python3 (the virtual environment's interpreter lives under /root,
which nobody cannot enter) and the environment's packages on PYTHONPATH.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ATTACK_TESTS = [
    "tests/mcp_servers/test_workspace_git.py",
    "tests/runtime/test_git.py",
    "tests/runtime/test_sandbox_limits.py",
    "tests/runtime/test_sandbox_session.py",
    "tests/runtime/test_occupancy.py",
    "tests/mcp_servers/test_workspace_server.py",
    "tests/test_serve.py::test_a_cancelled_tasks_command_is_dead_before_the_next_task_on_its_workspace_runs",
    "tests/test_serve.py::test_a_sandboxed_command_let_onto_the_network_cannot_submit_a_task",
]
SYSTEM_PYTHON = "/usr/bin/python3"


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "the suite runs as a normal user already: these tests ran that way"
    try:
        version = subprocess.run(
            [SYSTEM_PYTHON, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return f"{SYSTEM_PYTHON} is missing: nobody cannot run the virtual environment's interpreter under /root"
    if version != str(sys.version_info[:2]):
        return (
            f"{SYSTEM_PYTHON} is Python {version}, not {sys.version_info[:2]}: the environment's packages do not fit it"
        )
    return None


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
def test_the_attack_tests_pass_as_a_normal_user() -> None:
    home = Path(tempfile.mkdtemp(prefix="agentfleet-as-nobody-"))
    home.chmod(0o777)
    site = next(Path(sys.prefix, "lib").glob("python3.*/site-packages"))
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "PYTHONPATH": f"{ROOT / 'src'}:{site}",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--", SYSTEM_PYTHON, "-m", "pytest"]
    argv += ["-q", "-p", "no:cacheprovider", f"--basetemp={home / 'tmp'}", *ATTACK_TESTS]
    try:
        proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in summary and "failed" not in summary, summary
