"""JobRunner contract: launch once per attempt, list while running, cancel — for every implementation."""

from __future__ import annotations

import threading

from agentfleet.ports import JobRunner
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.polling import eventually


def task(attempt: int = 1) -> Task:
    return Task(request=TaskRequest(query="x", repo_url="https://example.com/acme/widgets"), attempt=attempt)


def test_a_launched_execution_is_listed_until_cancelled(job_runner: JobRunner) -> None:
    execution = job_runner.launch(task())
    assert execution.state == "running"
    assert [e.name for e in job_runner.list_active()] == [execution.name]
    job_runner.cancel(execution.name)
    assert eventually(lambda: job_runner.list_active() == [])


def test_a_second_launch_of_the_same_attempt_starts_nothing(job_runner: JobRunner) -> None:
    one = task()
    names = []
    threads = [threading.Thread(target=lambda: names.append(job_runner.launch(one).name)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(names)) == 1
    assert len(job_runner.list_active()) == 1
    job_runner.cancel(names[0])


def test_the_next_attempt_gets_its_own_execution(job_runner: JobRunner) -> None:
    first = task()
    second = first.model_copy(update={"attempt": 2})
    a, b = job_runner.launch(first), job_runner.launch(second)
    assert a.name != b.name and (a.attempt, b.attempt) == (1, 2)
    for name in (a.name, b.name):
        job_runner.cancel(name)
    assert eventually(lambda: job_runner.list_active() == [])


def test_cancelling_an_unknown_execution_is_harmless(job_runner: JobRunner) -> None:
    job_runner.cancel("agent-nothing-here-1")
    assert job_runner.health()
