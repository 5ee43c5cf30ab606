"""Limits on every sandboxed command: processes, memory, file size, /tmp and /dev/shm. A bounded
fork or memory bomb stops at its limit and the host process is unharmed.

As root, commands run as the unprivileged sandbox user and the process limit counts that user's
processes; as any other user, bwrap makes a user namespace first and the limit is set inside it.
The process test runs both ways when the suite runs as root.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest

from agentfleet.runtime.sandbox import Sandbox, SandboxConfig
from agentfleet.testing.polling import wait_for
from tests.processes import pids_running

IS_ROOT = os.geteuid() == 0
UNSANDBOXED = {"mode": "none", "allow_unsandboxed": True}
FORK = textwrap.dedent(
    """
    import os, time
    children = 0
    for _ in range(400):
        try:
            pid = os.fork()
        except OSError:
            break
        if pid == 0:
            time.sleep(30)
            os._exit(0)
        children += 1
    print("children", children, flush=True)
    """
)
FORK_CHECK = textwrap.dedent(
    """
    import shlex, sys
    from pathlib import Path
    from agentfleet.runtime.sandbox import Sandbox, SandboxConfig
    box = Sandbox(Path(sys.argv[1]), SandboxConfig(max_processes=40))
    result = box.run("python3 -c " + shlex.quote(sys.argv[2]), 60)
    print(result.output)
    """
)


def children(output: str) -> int:
    return int(output.split("children", 1)[1].split()[0])


def test_a_fork_bomb_stops_at_the_process_limit_and_the_host_goes_on(workspace: Path) -> None:
    result = Sandbox(workspace, SandboxConfig(max_processes=40)).run(f"python3 -c {shlex.quote(FORK)}", timeout_s=60)
    assert 1 <= children(result.output) < 40, result.output
    marker = f"bomb-{uuid.uuid4().hex}"
    bomb = Sandbox(workspace, SandboxConfig(max_processes=40)).run(f"bomb() {{ bomb | bomb; }}; bomb # {marker}", 3)
    assert bomb.timed_out or bomb.exit_code != 0
    assert "Resource temporarily unavailable" in bomb.output
    assert wait_for(lambda: not pids_running(marker), timeout_s=10, what="the bomb to be gone")
    assert subprocess.run(["true"]).returncode == 0, "the host still starts processes"


@pytest.mark.skipif(not IS_ROOT, reason="the suite runs as a normal user already: the test above is this one")
def test_as_a_normal_user_the_process_limit_holds_inside_the_user_namespace() -> None:
    home = Path(tempfile.mkdtemp(prefix="agentfleet-nobody-"))
    try:
        root = home / "ws"
        root.mkdir()
        for path in (home, root):
            os.chown(path, 65534, 65534)
        env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
        proc = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--",
             sys.executable, "-c", FORK_CHECK, str(root), FORK],
            env=env, cwd=home, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        subprocess.run(["rm", "-rf", str(home)], check=False)
    assert proc.returncode == 0, proc.stderr
    assert 1 <= children(proc.stdout) < 40, proc.stdout + proc.stderr


@pytest.mark.parametrize("extra", [{}, UNSANDBOXED], ids=["bwrap", "unsandboxed"])
def test_a_memory_bomb_fails_at_the_memory_limit(workspace: Path, extra: dict) -> None:
    box = Sandbox(workspace, SandboxConfig(memory_bytes=512 << 20, **extra))
    result = box.run("python3 -c 'b = bytearray(1 << 30); print(\"allocated\")'", timeout_s=60)
    assert "MemoryError" in result.output and "allocated" not in result.output
    assert result.exit_code not in (0, None)
    small = box.run("python3 -c 'b = bytearray(64 << 20); print(\"allocated\")'", timeout_s=60)
    assert "allocated" in small.output, "well under the limit works"


@pytest.mark.parametrize("extra", [{}, UNSANDBOXED], ids=["bwrap", "unsandboxed"])
def test_a_file_over_the_size_limit_is_cut_and_the_command_fails(workspace: Path, extra: dict) -> None:
    box = Sandbox(workspace, SandboxConfig(file_size_bytes=1 << 20, **extra))
    result = box.run("head -c 5000000 /dev/zero > big.bin", timeout_s=60)
    assert result.exit_code != 0
    assert (workspace / "big.bin").stat().st_size <= 1 << 20


def test_tmp_and_shm_are_bounded_tmpfs(workspace: Path) -> None:
    box = Sandbox(workspace, SandboxConfig(tmp_bytes=4 << 20, shm_bytes=2 << 20))
    result = box.run("head -c 10000000 /dev/zero > /tmp/f; echo tmp=$?; head -c 10000000 /dev/zero > /dev/shm/f; "
                     "echo shm=$?; du -k /tmp/f /dev/shm/f", timeout_s=60)  # fmt: skip
    assert "No space left on device" in result.output
    assert "tmp=1" in result.output and "shm=1" in result.output
    sizes = [int(line.split()[0]) for line in result.output.splitlines() if line.endswith(("/tmp/f", "/dev/shm/f"))]
    assert sizes and sizes[0] <= 4096 and sizes[1] <= 2048


def test_an_outer_limit_lower_than_ours_is_kept_not_raised(workspace: Path) -> None:
    run = (
        "from agentfleet.runtime.sandbox import Sandbox, SandboxConfig; import sys; "
        "r = Sandbox(sys.argv[1], SandboxConfig()).run('ulimit -v'); print(r.output, r.exit_code)"
    )
    proc = subprocess.run(
        ["prlimit", f"--as={1 << 31}", "--", sys.executable, "-c", run, str(workspace)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.stdout.split() == [str((1 << 31) >> 10), "0"], proc.stdout + proc.stderr
