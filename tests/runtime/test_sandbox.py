"""The command sandbox, with real bubblewrap, real files, real processes and real sockets."""

from __future__ import annotations

import os
import re
import shutil
import socket
import tempfile
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.errors import SandboxUnavailableError
from agentfleet.runtime.sandbox import ExecResult, Sandbox, SandboxConfig, grant_workspace
from agentfleet.settings import Settings
from agentfleet.testing.polling import eventually
from tests.processes import pids_running, unique_sleep_seconds

IS_ROOT = os.geteuid() == 0
NOT_ROOT = "not running as root, so the drop to the unprivileged sandbox user is not exercised"
UNSANDBOXED = SandboxConfig(mode="none", allow_unsandboxed=True)
CONNECT = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=3); print('CONNECTED')\""


@pytest.fixture
def loopback_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, just not reaped yet


def test_a_root_only_file_cannot_be_read_because_commands_run_as_the_unprivileged_user(workspace) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT)
    secret = workspace / "root-only.txt"
    secret.write_text("root-only-secret")
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    result = Sandbox(workspace, SandboxConfig()).run("id -u; cat root-only.txt; cat /etc/shadow")
    assert result.output.splitlines()[0] == "65534"
    assert "root-only-secret" not in result.output and "root:" not in result.output
    assert result.exit_code != 0


def test_a_file_in_the_host_users_home_cannot_be_read(workspace) -> None:
    home_dir = Path(tempfile.mkdtemp(prefix=".agentfleet-sandbox-test-", dir=Path.home()))
    try:
        secret = home_dir / "secret.txt"
        secret.write_text("home-secret-value")
        secret.chmod(0o644)
        home_dir.chmod(0o755)
        result = Sandbox(workspace, SandboxConfig()).run(f"cat {secret}; ls -A {Path.home()}")
    finally:
        shutil.rmtree(home_dir)
    assert "home-secret-value" not in result.output
    assert f"{secret}: No such file or directory" in result.output
    assert f"cannot access '{Path.home()}'" in result.output, "the home directory is not there at all"
    assert result.exit_code != 0


@pytest.mark.parametrize("config", [SandboxConfig(), UNSANDBOXED], ids=["bwrap", "unsandboxed"])
def test_the_parents_environment_never_reaches_the_command(workspace, monkeypatch, config) -> None:
    monkeypatch.setenv("LLM_API_KEY", "sk-sandbox-test-key")
    monkeypatch.setenv("AGENTFLEET_SECRET_THING", "also-secret")
    result = Sandbox(workspace, config, env={"EXTRA_VAR": "given"}).run("env")
    assert "sk-sandbox-test-key" not in result.output and "also-secret" not in result.output
    lines = set(result.output.splitlines())
    assert {"EXTRA_VAR=given", "LANG=C.UTF-8", "TERM=dumb"} <= lines
    assert any(line.startswith("PATH=/usr/local/sbin:") for line in lines)


def test_writes_land_in_the_workspace_and_nowhere_else(workspace) -> None:
    box = Sandbox(workspace, SandboxConfig())
    outside = workspace.parent / "escape.txt"
    inside = box.run("echo made-inside > made.txt && cat hello.txt")
    usr = box.run("touch /usr/agentfleet-sandbox-escape")
    box.run(f"echo escaped > {outside}")
    assert inside.exit_code == 0 and inside.output == "hello\n"
    assert (workspace / "made.txt").read_text() == "made-inside\n"
    assert usr.exit_code != 0 and not Path("/usr/agentfleet-sandbox-escape").exists()
    assert not outside.exists()


def test_the_command_starts_in_the_workspace_with_a_fresh_home_and_a_private_tmp(workspace) -> None:
    marker = workspace.parent / "host-tmp-marker"
    marker.write_text("host")
    result = Sandbox(workspace, SandboxConfig()).run(
        f"pwd; echo $HOME; touch ~/dotfile /tmp/scratch && ls -A ~; ls -A {workspace.parent}"
    )
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [str(workspace), "/tmp/home", "dotfile", "ws"]
    assert not Path("/tmp/scratch").exists()


def test_without_network_a_server_on_the_host_loopback_is_unreachable(workspace, loopback_port) -> None:
    result = Sandbox(workspace, SandboxConfig()).run(CONNECT.format(port=loopback_port))
    assert "CONNECTED" not in result.output
    assert "ConnectionRefusedError" in result.output and result.exit_code != 0


def test_with_network_allowed_the_host_loopback_server_is_reachable(workspace, loopback_port) -> None:
    result = Sandbox(workspace, SandboxConfig(network=True)).run(CONNECT.format(port=loopback_port))
    assert result.output == "CONNECTED\n" and result.exit_code == 0


def test_a_timeout_kills_every_process_in_the_sandbox(workspace) -> None:
    seconds = unique_sleep_seconds()
    result = Sandbox(workspace, SandboxConfig()).run(f"sleep {seconds} & echo started; sleep {seconds}", 1)
    assert result.timed_out and result.exit_code is None
    assert result.output == "started\n"
    assert result.render().endswith("[timed out after 1s]")
    assert eventually(lambda: not pids_running(seconds)), f"still running: {pids_running(seconds)}"


def test_a_timeout_kills_the_whole_process_group_when_unsandboxed(workspace) -> None:
    seconds = unique_sleep_seconds()
    result = Sandbox(workspace, UNSANDBOXED).run(f"sleep {seconds} & echo $!; sleep {seconds}", 1)
    assert result.timed_out
    child = int(result.output.split()[0])
    assert eventually(lambda: not alive(child)), f"background child {child} survived the timeout"


def test_the_timeout_is_clamped_to_the_configured_maximum(workspace) -> None:
    result = Sandbox(workspace, SandboxConfig(max_timeout_s=1)).run("sleep 30", timeout_s=600)
    assert result.timed_out and result.duration_s < 10


def test_huge_output_keeps_the_head_and_the_tail_within_the_limit(workspace) -> None:
    box = Sandbox(workspace, SandboxConfig(output_limit=4000))
    tracemalloc.start()
    try:
        result = box.run("echo BEGIN; yes | head -c 50000000; echo END")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.exit_code == 0 and result.truncated
    assert len(result.output) <= 4000
    assert result.output.startswith("BEGIN\ny\ny\n") and result.output.endswith("y\ny\nEND\n")
    omitted = re.search(r"\n… \[(\d+) bytes omitted\] …\n", result.output)
    assert omitted and int(omitted.group(1)) > 49_990_000
    assert peak < 2_000_000, f"peak {peak} bytes: output was buffered"


def test_an_endless_writer_is_cut_off_at_the_timeout_with_bounded_memory(workspace) -> None:
    tracemalloc.start()
    try:
        result = Sandbox(workspace, SandboxConfig()).run("yes", timeout_s=1)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.timed_out and result.truncated
    assert len(result.output) <= 16_000 and result.output.startswith("y\n")
    assert peak < 2_000_000


def test_truncation_never_tears_a_multibyte_character(workspace) -> None:
    box = Sandbox(workspace, SandboxConfig(output_limit=1001))
    result = box.run("python3 -c \"print('é' * 100000, end='')\"; printf '\\377 done'")
    assert result.truncated and "\ufffd" not in result.output.split("…")[0]
    assert result.output.startswith("éé") and result.output.endswith("éé\ufffd done")


def test_stdout_and_stderr_are_merged_stdin_is_empty_and_the_exit_code_is_reported(workspace) -> None:
    result = Sandbox(workspace, SandboxConfig()).run("echo out; echo err >&2; cat; exit 3")
    assert result == ExecResult(3, "out\nerr\n", False, False, result.duration_s)
    assert result.render() == "out\nerr\n[exit code 3]"
    assert ExecResult(0, "no newline", False, False, 0.1).render() == "no newline\n[exit code 0]"


def test_without_bubblewrap_commands_are_refused_with_instructions(workspace) -> None:
    box = Sandbox(workspace, SandboxConfig(bwrap_path="/nonexistent/bwrap"))
    with pytest.raises(SandboxUnavailableError) as refused:
        box.check()
    message = str(refused.value)
    assert "bubblewrap is missing" in message
    assert "apt-get install bubblewrap" in message and "AGENTFLEET_ALLOW_UNSANDBOXED=true" in message
    with pytest.raises(SandboxUnavailableError):
        box.run("echo should-not-run")


def test_without_bubblewrap_allow_unsandboxed_runs_the_command_in_the_workspace(workspace) -> None:
    box = Sandbox(workspace, SandboxConfig(bwrap_path="/nonexistent/bwrap", allow_unsandboxed=True))
    box.check()
    assert box.argv("echo hi") == [*box.config.prelude(), "echo hi"], "limits, then the command"
    result = box.run("echo hi; pwd")
    assert result.output == f"hi\n{workspace}\n" and result.exit_code == 0


def test_sandbox_mode_none_is_refused_unless_unsandboxed_runs_are_allowed(workspace) -> None:
    with pytest.raises(SandboxUnavailableError, match="AGENTFLEET_ALLOW_UNSANDBOXED=true"):
        Sandbox(workspace, SandboxConfig(mode="none")).check()
    assert Sandbox(workspace, UNSANDBOXED).run("echo ran").output == "ran\n"


def test_the_argv_isolates_the_command_and_binds_only_the_workspace_read_write(workspace) -> None:
    argv = Sandbox(workspace, SandboxConfig(uid=4321, gid=4322)).argv("echo hi")
    ws = str(workspace)
    for flag in (
        "--die-with-parent",
        "--new-session",
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-net",
        "--clearenv",
    ):
        assert flag in argv
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--bind"]
    assert binds == [ws] and argv[argv.index("--chdir") + 1] == ws
    assert not {"/root", "/home", "/work"} & set(argv)
    assert ("--reuid=4321" in argv and "--regid=4322" in argv) is IS_ROOT
    assert argv[-1] == "echo hi"
    assert "--unshare-net" not in Sandbox(workspace, SandboxConfig(network=True)).argv("true")


def test_the_config_comes_from_settings() -> None:
    settings = Settings(
        _env_file=None, sandbox="none", allow_unsandboxed=True, sandbox_uid=1234, sandbox_gid=1235,
        exec_output_limit=999, exec_max_timeout_s=77,
    )  # type: ignore[call-arg]  # fmt: skip
    config = SandboxConfig.from_settings(settings, network=True)
    assert config == SandboxConfig(
        mode="none", allow_unsandboxed=True, uid=1234, gid=1235, network=True, output_limit=999,
        max_timeout_s=77,
    )  # fmt: skip
    limits = Settings(
        _env_file=None, sandbox_max_processes=7, sandbox_memory_bytes=8 << 20, sandbox_file_size_bytes=1 << 20,
        sandbox_tmp_bytes=2 << 20, sandbox_shm_bytes=0,
    )  # type: ignore[call-arg]  # fmt: skip
    config = SandboxConfig.from_settings(limits, network=False)
    assert (config.max_processes, config.memory_bytes, config.file_size_bytes, config.tmp_bytes, config.shm_bytes) == (
        7, 8 << 20, 1 << 20, 2 << 20, 0
    )  # fmt: skip


def test_granting_the_workspace_hands_the_tree_to_the_sandbox_user_without_following_links(tmp_path) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT)
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f.txt").write_text("f")
    (root / "link").symlink_to(outside)
    grant_workspace(root, 4321, 4322)
    for path in (root, root / "a", root / "a" / "b", root / "a" / "b" / "f.txt", root / "link"):
        assert (path.lstat().st_uid, path.lstat().st_gid) == (4321, 4322), path
    assert outside.stat().st_uid == 0


def test_extra_read_only_binds_are_readable_but_not_writable(workspace, tmp_path) -> None:
    tools = tmp_path / "tools" / "bin"
    tools.mkdir(parents=True)
    (tools / "tool.txt").write_text("tool-data\n")
    box = Sandbox(workspace, SandboxConfig(extra_ro_binds=(str(tools),)))
    assert box.run(f"cat {tools}/tool.txt").output == "tool-data\n"
    assert box.run(f"touch {tools}/new").exit_code != 0
    assert not (tools / "new").exists()
