"""LocalJobRunner: real processes, a real SQLite table, no mocks.

The agent stand-in is a tiny Python program: it appends one JSON line about itself to a
marker file (so the tests count processes), prints a line to its log, then waits for its stop
file. Apart from the constructor, the tests use only the JobRunner protocol where they can.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest
from pydantic import SecretStr

from agentfleet.local.jobs import LocalJobRunner
from agentfleet.ports import Execution, JobRunner
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.polling import wait_for

T = TypeVar("T")

AGENT = """
import json, os, pathlib, signal, sys, time
marker, stop, ignore_term = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3] == "1"
if ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
info = {"pid": os.getpid(), "sid": os.getsid(0), "argv": sys.argv[4:], "home": os.environ["AGENTFLEET_HOME"],
        "task_id": os.environ["AGENTFLEET_TASK_ID"], "attempt": os.environ["AGENTFLEET_ATTEMPT"],
        "env": dict(os.environ), "cwd": os.getcwd()}
with marker.open("a") as fh:
    fh.write(json.dumps(info) + "\\n")
print("agent says hello", flush=True)
deadline = time.monotonic() + 120
while not stop.exists() and time.monotonic() < deadline:
    time.sleep(0.02)
"""


def gone(pid: int) -> bool:
    """No such process, or only its zombie (an orphan waiting for an init that may not reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        # The entry can vanish between open and read: the kernel answers ESRCH then.
        return True
    return stat[stat.rindex(")") + 2] in "ZX"


class Agents:
    """The marker and stop files of the stand-in agent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.marker = root / "markers.jsonl"

    def command(self, *, ignore_term: bool = False) -> list[str]:
        stop = self.root / "stop-{task_id}-{attempt}"
        flag = "1" if ignore_term else "0"
        return [sys.executable, "-c", AGENT, str(self.marker), str(stop), flag, "{task_id}", "{attempt}"]

    def started(self) -> list[dict[str, Any]]:
        if not self.marker.exists():
            return []
        return [json.loads(line) for line in self.marker.read_text().splitlines()]

    def wait_started(self, count: int = 1) -> list[dict[str, Any]]:
        return wait_for(lambda: found if len(found := self.started()) >= count else [])

    def stop(self, task: Task) -> None:
        (self.root / f"stop-{task.id}-{task.attempt}").touch()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    agents = Agents(tmp_path)
    yield agents
    for info in agents.started():  # leave no process behind, whatever the test did
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(info["pid"], signal.SIGKILL)


@pytest.fixture
def runner(settings: Settings, agents: Agents) -> LocalJobRunner:
    return LocalJobRunner(settings, command=agents.command(), grace_s=0.5)


def new_task(attempt: int = 1) -> Task:
    return Task(request=TaskRequest(query="fix it", repo_url="https://github.com/acme/widgets"), attempt=attempt)


def names(runner: JobRunner) -> set[str]:
    return {execution.name for execution in runner.list_active()}


def test_it_implements_the_job_runner_port(runner: LocalJobRunner) -> None:
    assert isinstance(runner, JobRunner)
    assert runner.health() == {"backend": "local-process", "active": 0}


def test_launch_starts_the_agent_in_its_own_session_with_its_env_and_a_log(
    runner: LocalJobRunner, agents: Agents, settings: Settings
) -> None:
    task = new_task()

    execution = runner.launch(task)

    assert execution.name == f"agent-{task.workspace_id}-{task.id}-1"
    assert (execution.task_id, execution.attempt, execution.workspace_id) == (task.id, 1, task.workspace_id)
    assert execution.state == "running" and execution.started_at is not None
    [info] = agents.wait_started()
    assert (info["task_id"], info["attempt"], info["argv"]) == (task.id, "1", [task.id, "1"])
    assert info["home"] == str(settings.home)
    assert info["sid"] == info["pid"]  # a session of its own: Ctrl-C on the server does not reach it
    log = settings.home / "logs" / f"{task.id}-1.log"
    wait_for(lambda: log.exists() and "agent says hello" in log.read_text())
    assert runner.health()["active"] == 1


def test_the_agent_gets_the_settings_and_an_allow_listed_environment_never_the_token(
    settings: Settings, agents: Agents, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLEET_API_TOKEN", "server-token-must-not-pass")
    monkeypatch.setenv("SOME_CLOUD_SECRET", "also-not")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    configured = settings.model_copy(
        update={"api_token": SecretStr("server-token-must-not-pass"), "gpt_oss_url": "http://127.0.0.1:9/v1"}
    )
    LocalJobRunner(configured, command=agents.command(), grace_s=0.5).launch(new_task())
    [info] = agents.wait_started()
    env = info["env"]
    assert "server-token-must-not-pass" not in json.dumps(env) and "SOME_CLOUD_SECRET" not in env
    assert env["GPT_OSS_URL"] == "http://127.0.0.1:9/v1", "the launcher's settings, written out"
    assert env["LLM_API_KEY"] == "not-needed" and env["PATH"] == os.environ["PATH"] and env["LC_ALL"] == "C.UTF-8"
    assert info["cwd"] == str(settings.home), "not the server's folder, whose .env holds the token"


def test_a_second_launch_of_the_same_attempt_returns_the_first_execution_and_starts_nothing(
    runner: LocalJobRunner, agents: Agents
) -> None:
    task = new_task()
    first = runner.launch(task)
    agents.wait_started()

    again = runner.launch(task)

    assert again == first
    agents.stop(task)
    wait_for(lambda: not runner.list_active())
    assert len(agents.started()) == 1


def test_five_concurrent_launches_of_the_same_attempt_start_one_process(runner: LocalJobRunner, agents: Agents) -> None:
    task = new_task()
    results: list[Execution] = []
    start = threading.Barrier(5)

    def launch() -> None:
        start.wait()
        results.append(runner.launch(task))

    threads = [threading.Thread(target=launch) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(results) == 5 and len({r.name for r in results}) == 1
    agents.wait_started()
    agents.stop(task)
    wait_for(lambda: not runner.list_active())
    assert len(agents.started()) == 1


def test_an_execution_is_active_while_its_process_runs_and_not_after_it_exits(
    runner: LocalJobRunner, agents: Agents
) -> None:
    task = new_task()
    execution = runner.launch(task)
    agents.wait_started()
    assert names(runner) == {execution.name}

    agents.stop(task)

    wait_for(lambda: not runner.list_active())
    wait_for(lambda: runner.get(execution.name) == execution.model_copy(update={"state": "succeeded"}))


def test_a_new_runner_on_the_same_database_sees_the_running_execution(
    runner: LocalJobRunner, agents: Agents, settings: Settings
) -> None:
    task = new_task()
    execution = runner.launch(task)
    agents.wait_started()

    restarted = LocalJobRunner(settings, command=agents.command())

    assert names(restarted) == {execution.name}
    assert restarted.launch(task) == execution
    agents.stop(task)
    wait_for(lambda: not restarted.list_active())
    assert len(agents.started()) == 1


LAUNCHER = """
import sys
from pathlib import Path
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.settings import Settings
from agentfleet.tasks import Task
task = Task.model_validate_json(sys.argv[1])
runner = LocalJobRunner(Settings(home=Path(sys.argv[2]), _env_file=None), command=sys.argv[3:])
print(runner.launch(task).name)
"""


def test_an_execution_launched_by_a_process_that_has_ended_is_listed_and_cancelled(
    agents: Agents, settings: Settings
) -> None:
    task = new_task()
    argv = [sys.executable, "-c", LAUNCHER, task.model_dump_json(), str(settings.home), *agents.command()]
    name = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    [info] = agents.wait_started()

    runner = LocalJobRunner(settings, command=agents.command(), grace_s=0.5)

    assert names(runner) == {name}
    runner.cancel(name)
    wait_for(lambda: gone(info["pid"]))
    assert runner.list_active() == []


def test_cancel_stops_the_process_and_the_execution_is_no_longer_active(runner: LocalJobRunner, agents: Agents) -> None:
    execution = runner.launch(new_task())
    [info] = agents.wait_started()

    runner.cancel(execution.name)

    assert runner.list_active() == []
    wait_for(lambda: gone(info["pid"]))
    assert runner.get(execution.name) == execution.model_copy(update={"state": "cancelled"})
    runner.cancel(execution.name)  # again: nothing to do
    runner.cancel("agent-no-such-execution")


def test_cancel_kills_a_process_that_ignores_sigterm_after_the_grace_period(settings: Settings, agents: Agents) -> None:
    runner = LocalJobRunner(settings, command=agents.command(ignore_term=True), grace_s=0.3)
    execution = runner.launch(new_task())
    [info] = agents.wait_started()

    runner.cancel(execution.name)

    wait_for(lambda: gone(info["pid"]))


def test_the_next_attempt_of_a_task_launches_a_new_execution(runner: LocalJobRunner, agents: Agents) -> None:
    first_attempt = new_task()
    first = runner.launch(first_attempt)
    second_attempt = first_attempt.model_copy(update={"attempt": 2})

    second = runner.launch(second_attempt)

    assert first.name != second.name and second.attempt == 2
    started = agents.wait_started(2)
    assert sorted(info["attempt"] for info in started) == ["1", "2"]
    assert names(runner) == {first.name, second.name}


def test_a_pid_reused_by_another_process_is_not_taken_for_the_agent(runner: LocalJobRunner, agents: Agents) -> None:
    execution = runner.launch(new_task())
    agents.wait_started()
    with sqlite3.connect(runner.db_path) as conn:  # this process stands in for the pid's new owner
        conn.execute("UPDATE executions SET pid = ? WHERE name = ?", (os.getpid(), execution.name))

    assert runner.list_active() == []


def test_a_command_that_cannot_start_raises_and_a_later_launch_tries_again(settings: Settings, tmp_path: Path) -> None:
    agent = tmp_path / "agent.sh"
    runner = LocalJobRunner(settings, command=[str(agent)])
    task = new_task()

    with pytest.raises(OSError):
        runner.launch(task)
    assert runner.list_active() == []

    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(0o755)
    assert runner.launch(task).state == "running", "the failed start left nothing that blocks a retry"
