"""The sandbox session (one bubblewrap, a trusted executor forking each command), with real
bubblewrap and real processes: the same answers as a bubblewrap per command, nothing a command
started outliving it, a command that attacks the executor changing no later answer, and the
processes a step starts counted."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.runtime import sandbox, sandbox_executor
from agentfleet.runtime.capture import ExecResult, _Capture, cut, kill_all
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, SandboxSession
from agentfleet.testing.polling import eventually
from tests.processes import pids_running, unique_sleep_seconds

PTRACE = (
    'python3 -c "import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); '
    "print('ptrace', libc.ptrace(16, os.getppid(), 0, 0), ctypes.get_errno())\""
)


@pytest.fixture
def session(workspace: Path) -> Iterator[SandboxSession]:
    with Sandbox(workspace, SandboxConfig(output_limit=1001)).session() as session:
        yield session


def bwrap_children() -> list[int]:
    """This process's children that are bwrap (a /proc walk, not the session's own word)."""
    me, found = os.getpid(), []
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit():
                continue
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me and os.path.basename(os.readlink(entry / "exe")) == "bwrap":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def test_a_session_answers_as_a_bubblewrap_per_command_does(workspace, session) -> None:
    fresh = Sandbox(workspace, SandboxConfig(output_limit=1001))
    commands = [
        "echo out; echo err >&2; cat; exit 3",
        "id -u; pwd; echo $HOME; env | sort",
        "python3 -c \"print('é' * 100000, end='')\"; printf '\\377 done'",
        "echo BEGIN; yes | head -c 5000000; echo END",
        "touch /usr/escape-attempt",
        "kill -TERM $$",
    ]
    for command in commands:
        mine, theirs = session.run(command), fresh.run(command)
        assert (mine.exit_code, mine.output, mine.timed_out, mine.truncated) == (
            theirs.exit_code,
            theirs.output,
            theirs.timed_out,
            theirs.truncated,
        ), command
    assert session.starts == 1


def test_a_timeout_kills_the_command_and_everything_it_started(session) -> None:
    seconds = unique_sleep_seconds()
    result = session.run(f"sleep {seconds} & echo started; sleep {seconds}", 1)
    assert result.timed_out and result.exit_code is None and result.output == "started\n"
    assert result.render().endswith("[timed out after 1s]")
    assert not pids_running(seconds)
    assert session.run("echo still here").output == "still here\n"


def test_nothing_a_command_started_outlives_it_but_tmp_and_home_persist(workspace, session) -> None:
    seconds = unique_sleep_seconds()
    started = session.run(f"(setsid sleep {seconds} &); nohup sleep {seconds} >/dev/null 2>&1 & echo x > /tmp/kept")
    assert started.exit_code == 0
    assert not pids_running(seconds), "a background process outlived its command"
    assert session.run("cat /tmp/kept; ls -d $HOME").output == "x\n/tmp/home\n"
    assert Sandbox(workspace, SandboxConfig()).run("cat /tmp/kept").exit_code != 0, "a fresh sandbox sees none of it"


def test_a_command_that_attacks_the_executor_changes_no_later_answer_and_checks_still_run_fresh(
    workspace, session, monkeypatch
) -> None:
    monkeypatch.setattr(sandbox, "ANSWER_GRACE_S", 0.5)
    assert session.run("echo warm").exit_code == 0
    # its pipes are out of reach: not dumpable, so neither /proc/PID/fd nor ptrace
    pried = session.run(
        'echo forged > /proc/$PPID/fd/1; ls /proc/$PPID/fd; cat /proc/$PPID/mem; echo "[exit code 0]" >&2; ' + PTRACE
    )
    assert "Permission denied" in pried.output and "ptrace -1 1" in pried.output, pried.output
    assert session.run("echo true; exit 4").output == "true\n"
    # a process left behind to answer for the executor later is killed with the command
    seconds = unique_sleep_seconds()
    lurker = f"(sleep 0.3; printf '\\0\\0\\0\\2{{}}' > /proc/$PPID/fd/1) & sleep {seconds} & echo left"
    assert session.run(lurker).output == "left\n"
    answer = session.run("sleep 0.5; echo real; exit 7")
    assert (answer.exit_code, answer.output) == (7, "real\n")
    assert not pids_running(seconds)
    # killing the executor: that command says so, the next runs in a new sandbox that says so
    session.run("echo x > /tmp/before")
    killed = session.run(f"sleep {seconds} & kill -KILL $PPID; sleep 5")
    assert killed.exit_code is None and not killed.timed_out and "sandbox ended" in killed.output
    assert eventually(lambda: not pids_running(seconds)), "the old sandbox's processes survived"
    after = session.run("cat /tmp/before; echo fine; exit 2")
    assert after.exit_code == 2 and after.output.startswith("[the sandbox was restarted")
    assert after.output.endswith("No such file or directory\nfine\n")
    assert session.starts == 2
    assert session.run("echo normal").output == "normal\n", "the note is on the first command only"
    # a check (Sandbox.run) runs in a bubblewrap of its own, whatever the session's commands did
    session.run("echo poisoned > /tmp/state; kill -STOP $PPID", 1)
    check = Sandbox(workspace, SandboxConfig()).run("ls -A /tmp/home; cat /tmp/state; echo checked; exit 5")
    assert check.exit_code == 5 and check.output.endswith("No such file or directory\nchecked\n"), check.output


def test_a_step_forks_one_process_and_starts_no_sandbox_after_the_first(session) -> None:
    """The budget: one bwrap for the session, one process per command (bash, which execs a single
    command); counted by the pids of the sandbox's own pid namespace, which are handed out in order,
    and by a /proc walk of this process's bwrap children."""
    before = set(bwrap_children())  # other tests' sandboxes, on their way out
    assert session.pid is None
    pids = []
    for _ in range(5):
        result = session.run("echo $$")
        pids.append(int(result.output))
        assert set(bwrap_children()) - before == {session.pid}
    assert [b - a for a, b in itertools.pairwise(pids)] == [1, 1, 1, 1]
    assert session.starts == 1 and session.forks == 5
    bwrap = session.pid
    session.close()
    assert eventually(lambda: bwrap not in bwrap_children())


def test_kill_all_ends_a_running_session_as_it_ends_every_command(session) -> None:
    seconds = unique_sleep_seconds()
    session.run("true")
    bwrap = session.pid
    assert bwrap is not None
    kill_all()  # what SIGTERM and the owner's end do
    assert eventually(lambda: bwrap not in bwrap_children())
    after = session.run(f"echo $$; sleep {seconds} & echo ok")
    assert after.output.endswith("ok\n") and session.starts == 2
    session.close()
    assert eventually(lambda: not pids_running(seconds))


def test_a_session_dropped_unclosed_ends_its_sandbox(workspace) -> None:
    session = Sandbox(workspace, SandboxConfig()).session()
    session.run("true")
    bwrap = session.pid
    del session
    assert eventually(lambda: bwrap not in bwrap_children())


def test_unsandboxed_a_session_runs_each_command_as_sandbox_run_does(workspace) -> None:
    session = Sandbox(workspace, SandboxConfig(mode="none", allow_unsandboxed=True)).session()
    result = session.run("pwd; echo hi")
    assert result.output == f"{workspace}\nhi\n" and session.starts == 0


def test_a_command_that_cannot_be_started_is_an_error_of_its_own_not_the_sessions_end(session) -> None:
    result = session.run("echo a\0b")
    assert result.exit_code == 126 and "could not be started" in result.output
    assert session.run("echo fine").output == "fine\n" and session.starts == 1


def test_a_command_that_stops_answering_is_killed_after_its_timeout(session, monkeypatch) -> None:
    monkeypatch.setattr(sandbox, "ANSWER_GRACE_S", 0.5)
    result = session.run("kill -STOP $PPID; sleep 1", 1)
    assert result.exit_code is None and "did not answer" in result.output
    assert session.run("echo back").output.endswith("back\n")


def test_the_executor_cuts_output_as_capture_does() -> None:
    rng = random.Random(15)
    for limit in (0, 10, 60, 1001, 4000):
        mine, theirs = sandbox_executor.Capture(limit), _Capture(limit)
        for _ in range(rng.randrange(1, 40)):
            chunk = rng.randbytes(rng.randrange(0, 700))
            mine.feed(chunk)
            theirs.feed(chunk)
        assert cut(limit, bytes(mine.head), bytes(mine.tail), mine.total) == theirs.text()


def test_the_executor_source_stands_alone() -> None:
    source = Path(sandbox_executor.__file__).read_text()
    imports = set(re.findall(r"^(?:from|import) (\S+)", source, re.M))
    assert imports == {
        "__future__",
        "contextlib",
        "ctypes",
        "json",
        "os",
        "selectors",
        "signal",
        "struct",
        "subprocess",
        "sys",
        "time",
    }


def test_on_the_event_loop_a_session_answers_as_run_does_and_a_cancelled_command_ends_it(session) -> None:
    seconds = unique_sleep_seconds()

    async def go() -> list[ExecResult]:
        results = [await session.arun("echo first")]  # starts the sandbox (in a thread)
        for command in ["echo out; echo err >&2; exit 3", "echo BEGIN; yes | head -c 500000; echo END", "echo $$"]:
            results.append(await session.arun(command))
        results.append(await session.arun(f"sleep {seconds} & sleep {seconds}", 1))
        results.append(await session.arun("kill -KILL $PPID"))
        results.append(await session.arun("echo again"))  # restarts (in a thread)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(session.arun(f"sleep {seconds}"), 0.5)
        results.append(await session.arun("echo after the cancel"))
        return results

    first, failed, long, pid, slept, killed, again, after = asyncio.run(go())
    assert first.output == "first\n" and (failed.exit_code, failed.output) == (3, "out\nerr\n")
    assert long.output == session.sandbox.run("echo BEGIN; yes | head -c 500000; echo END").output
    assert long.truncated and int(pid.output) > 1
    assert slept.timed_out and "sandbox ended" in killed.output
    assert again.output.startswith("[the sandbox was restarted") and again.output.endswith("again\n")
    assert after.output.startswith("[the sandbox was restarted") and after.output.endswith("after the cancel\n")
    assert session.starts == 3
    assert eventually(lambda: not pids_running(seconds)), "the cancelled command outlived its session"


def test_closing_with_a_command_in_flight_on_the_event_loop_kills_it_and_does_not_wait(session) -> None:
    seconds = unique_sleep_seconds()

    async def go() -> ExecResult:
        await session.arun("true")
        running = asyncio.ensure_future(session.arun(f"sleep {seconds}"))
        await asyncio.sleep(0.3)
        session.close()  # on the loop's own thread: waiting for the command would never end
        return await running

    result = asyncio.run(go())
    assert result.exit_code is None and "sandbox ended" in result.output
    assert session.pid is None
    # The sandbox is killed, not waited for: its pid namespace goes down a moment after.
    assert eventually(lambda: not pids_running(seconds)), "the command outlived the closed session"
