"""`agentfleet serve`'s process in-process: the HTTP server and its background loops."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from agentfleet.backends import build_backends
from agentfleet.local import server as server_module
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.server import LocalServer, Loop
from agentfleet.service import ReapReport, Service
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.polling import wait_for


def test_an_idle_servers_loops_sleep_between_steps(settings) -> None:
    settings = settings.model_copy(update={"reap_interval_s": 0.25})
    server = LocalServer(Service(build_backends(settings), settings), port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: httpx.get(f"{server.url}/health", timeout=2).status_code == 200, what="the server")
        dispatcher, reaper = server.loops
        start = {loop.name: loop.steps for loop in server.loops}
        window = 1.5
        time.sleep(window)  # the thing measured is how often the loops wake in this window
        woke = {loop.name: loop.steps - start[loop.name] for loop in server.loops}
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive(), "stop() ended serve_forever"
    assert 1 <= woke["reaper"] <= window / reaper.interval_s + 2, woke
    assert 1 <= woke["dispatcher"] <= window / dispatcher.interval_s + 2, woke


def test_a_step_that_returns_a_report_waits_and_only_true_runs_again_at_once() -> None:
    calls = {"report": 0, "busy": 0}

    def report() -> ReapReport:
        calls["report"] += 1
        return ReapReport(requeued=["t1"])  # truthy, like every dataclass

    def busy() -> bool:
        calls["busy"] += 1
        return calls["busy"] < 50

    loops = [Loop("report", report, 10.0), Loop("busy", busy, 10.0)]
    for loop in loops:
        loop.start()
    wait_for(lambda: calls["busy"] >= 50, what="the busy loop to run 50 steps back to back")
    for loop in loops:
        loop.stop()
        loop.join(timeout=5)
    assert calls["report"] == 1, "a report is not 'busy': the loop waited its interval"


@pytest.fixture
def asleep(settings, monkeypatch) -> Iterator[tuple[Service, Loop]]:
    """A running server whose dispatcher has made its first step and now sleeps its poll, an hour
    long; its agents are a process that ends at once. After the test: stop() ends that sleep."""
    monkeypatch.setattr(server_module, "DISPATCH_POLL_S", 3600.0)
    service = Service(build_backends(settings), settings)
    server = LocalServer(service, port=0)
    dispatcher = server.loops[0]
    assert dispatcher.name == "dispatcher" and dispatcher.interval_s == 3600.0
    jobs = service.backends.jobs
    assert isinstance(jobs, LocalJobRunner)
    jobs.command = [sys.executable, "-c", "pass"]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        wait_for(lambda: dispatcher.steps >= 1, what="the dispatcher's first step")
        time.sleep(0.3)  # it is now asleep for its interval
        assert dispatcher.steps == 1
        yield service, dispatcher
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive(), "stop() ends a loop asleep for its interval at once"


def test_a_task_submitted_to_the_server_wakes_its_dispatcher_instead_of_waiting_for_the_poll(asleep) -> None:
    """A publish in the server's own process wakes the dispatcher: with its poll an hour away, a
    message is still pulled at once (a publish from another process waits for the poll)."""
    service, dispatcher = asleep
    service.backends.queue.publish_raw(b"not a dispatch message")
    wait_for(lambda: dispatcher.steps >= 2, timeout_s=30, what="the dispatcher, woken by the publish")
    wait_for(lambda: service.backends.queue.pending() == 0, timeout_s=30, what="the message handled")


def test_the_end_of_an_agent_the_server_started_wakes_its_dispatcher(asleep) -> None:
    """An agent publishes the next task of its workspace before it exits, from its own process; the
    runner's watcher, seeing it exit, wakes the server's dispatcher instead of leaving it to the poll."""
    service, dispatcher = asleep
    assert dispatcher.wake in service.backends.jobs.exit_listeners  # type: ignore[attr-defined]
    service.backends.jobs.launch(Task(request=TaskRequest(query="q", repo_url="https://github.com/acme/widgets")))
    wait_for(lambda: dispatcher.steps >= 2, timeout_s=30, what="the dispatcher, woken by the agent's end")
