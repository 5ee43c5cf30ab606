"""The warm launcher (local/warm.py) under LocalJobRunner: the real agent, forked from one process
that imported it once, for real tasks of the local backends; no mocks.

A task whose model is a loopback socket that accepts connections and never answers keeps its
agent waiting on its first model request: long enough to look at the process, cancel it, or
kill its launcher."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from agentfleet.backends import build_backends
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.ports import DispatchMessage
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskStatus
from agentfleet.testing.polling import wait_for

SECRET = "never-in-an-agent-0b5f"


@pytest.fixture
def silent_model() -> Iterator[str]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"


@pytest.fixture
def service(tmp_path: Path, silent_model: str, repo_factory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    monkeypatch.setenv("SOME_SERVER_SECRET", SECRET)  # in the launcher's environment, never an agent's
    if "PYTHONPATH" in os.environ:  # the agents must find this checkout's package from their own cwd
        paths = [str(Path(p).resolve()) for p in os.environ["PYTHONPATH"].split(os.pathsep) if p]
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    settings = Settings(
        home=tmp_path / "home",
        gpt_oss_url=silent_model,
        api_token=SecretStr(SECRET),
        llm_timeout_s=120,
        memory="off",
        _env_file=None,  # type: ignore[call-arg]
    )
    backends = build_backends(settings)
    assert isinstance(backends.jobs, LocalJobRunner) and backends.jobs.warm, "the default is the warm launcher"
    service = Service(backends, settings)
    service.repo = repo_factory({"app.py": "print('hi')\n"})  # type: ignore[attr-defined]
    yield service
    for execution in backends.jobs.list_active():
        backends.jobs.cancel(execution.name)
    backends.jobs.close()


def dispatched(service: Service) -> Task:
    task, _ = service.submit({"query": "bench", "repo_url": str(service.repo)})  # type: ignore[attr-defined]
    service.dispatch(DispatchMessage(task_id=task.id, attempt=task.attempt, workspace_id=task.workspace_id))
    return wait_for(lambda: t if (t := service.get(task.id)).status is TaskStatus.RUNNING else None, timeout_s=60)


def pid_of(service: Service, task: Task) -> int:
    jobs = service.backends.jobs
    assert isinstance(jobs, LocalJobRunner)
    return jobs._conn().execute("SELECT pid FROM executions WHERE task_id = ?", (task.id,)).fetchone()["pid"]


def stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def environ(pid: int) -> str:
    return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")


def test_a_warm_agent_is_forked_by_the_launcher_into_a_session_of_its_own_and_logs_to_its_file(service) -> None:
    task = dispatched(service)
    pid = pid_of(service, task)
    launcher = service.backends.jobs._launcher._proc.pid
    fields = stat(pid)
    assert int(fields[1]) == launcher, "its parent is the warm launcher, not a fresh interpreter of ours"
    assert int(fields[3]) == pid, "it leads a session of its own (Ctrl-C on the server does not reach it)"
    assert os.readlink(f"/proc/{pid}/fd/0") == os.devnull
    log = service.settings.home / "logs" / f"{task.id}-{task.attempt}.log"
    assert os.readlink(f"/proc/{pid}/fd/1") == str(log) == os.readlink(f"/proc/{pid}/fd/2")
    assert os.readlink(f"/proc/{pid}/cwd") == str(service.settings.home)
    title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").split()
    assert title[1:] == [b"-m", b"agentfleet.agent", b"--task-id", task.id.encode(), b"--attempt", b"1"], title
    wait_for(
        lambda: any(e.kind.value == "workspace" for e in service.events(task.id)),
        what="the forked agent preparing the workspace after it claimed its attempt",
    )


def test_neither_the_launcher_nor_an_agent_carries_the_servers_token_or_environment(service) -> None:
    task = dispatched(service)
    pid = pid_of(service, task)
    launcher = service.backends.jobs._launcher._proc.pid
    started_with = service.backends.jobs._launcher.env  # what its process was started with
    assert SECRET not in "".join(f"{k}={v}" for k, v in started_with.items())
    assert started_with["AGENTFLEET_HOME"] == str(service.settings.home), "the settings are written out for it"
    # Each agent's environment is its launch's (agent_environment, tested with the runner). Their
    # /proc environ areas hold the processes' titles now (setproctitle): the secret is in none.
    for process in (launcher, pid):
        assert SECRET not in environ(process) + Path(f"/proc/{process}/cmdline").read_text(errors="replace")


def test_cancel_stops_a_warm_agent_and_the_execution_is_no_longer_active(service) -> None:
    task = dispatched(service)
    pid = pid_of(service, task)
    service.cancel(task.id)
    wait_for(lambda: not Path(f"/proc/{pid}").exists() or stat(pid)[0] in "ZX", timeout_s=30)
    assert service.backends.jobs.list_active() == []
    assert wait_for(lambda: service.get(task.id).status.final, timeout_s=30)


def test_a_launcher_that_died_is_started_again_and_its_orphans_are_still_watched(service) -> None:
    first = dispatched(service)
    jobs = service.backends.jobs
    old = jobs._launcher._proc
    os.kill(old.pid, signal.SIGKILL)
    old.wait()
    orphan = pid_of(service, first)
    assert Path(f"/proc/{orphan}").exists(), "the agent outlives its launcher, as agents outlive the server"
    assert [e.name for e in jobs.list_active()] == [first.execution]
    service.cancel(first.id)
    wait_for(lambda: not Path(f"/proc/{orphan}").exists() or stat(orphan)[0] in "ZX", timeout_s=30)
    second = dispatched(service)
    assert jobs._launcher._proc.pid != old.pid and stat(pid_of(service, second))[1] == str(jobs._launcher._proc.pid)
