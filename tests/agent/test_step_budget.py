"""What a step of the agent costs in SQLite connections, against a stated budget (no clock): an
attempt of the local backends worked in this process (run_attempt: the claim, the heartbeats, every
event appended to the store) with 2 and then 6 tool steps opens the same number of connections."""

from __future__ import annotations

import sqlite3

import pytest

import agentfleet.local.sqlite
from agentfleet.agent.attempt import run_attempt
from agentfleet.backends import build_backends
from agentfleet.service import Service
from agentfleet.settings import Settings
from agentfleet.tasks import TaskStatus
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

PER_STEP_BUDGET = 0
"""New SQLite connections per step: the stores keep one open per thread (local/sqlite.ThreadConnections)."""


def connections_for(steps: int, tmp_path, repo: str, monkeypatch: pytest.MonkeyPatch) -> int:
    script = [reply(None, tool_call("exec", {"command": f"echo step {i}"})) for i in range(steps)]
    opened = []
    real = sqlite3.connect

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        opened.append(args[0] if args else kwargs.get("database"))
        return real(*args, **kwargs)

    with ScriptedLLM([*script, reply("Done: it echoes.")]) as llm:
        settings = Settings(
            home=tmp_path / f"home-{steps}",
            gpt_oss_url=llm.url,
            heartbeat_interval_s=3600,
            memory="off",
            _env_file=None,  # type: ignore[call-arg]
        )
        backends = build_backends(settings)
        service = Service(backends, settings)
        task, _ = service.submit({"query": "Run the echo commands", "repo_url": repo})
        assert backends.store.transition(task.id, [TaskStatus.QUEUED], TaskStatus.DISPATCHED, attempt=task.attempt)
        monkeypatch.setattr(agentfleet.local.sqlite.sqlite3, "connect", counting)
        try:
            assert run_attempt(task.id, task.attempt, settings, backends) == 0
        finally:
            monkeypatch.setattr(agentfleet.local.sqlite.sqlite3, "connect", real)
        final = backends.store.get(task.id)
        assert final is not None and final.status is TaskStatus.SUCCEEDED, final and final.error
        assert final.usage.tool_calls == steps
        assert len(backends.store.events(task.id)) > 2 * steps, "each step's events went to the store"
    return len(opened)


def test_a_step_opens_no_sqlite_connection(repo_factory, tmp_path, monkeypatch) -> None:
    repo = str(repo_factory({"app.py": "print('hi')\n"}))
    few = connections_for(2, tmp_path, repo, monkeypatch)
    many = connections_for(6, tmp_path, repo, monkeypatch)
    assert many - few <= PER_STEP_BUDGET * 4, f"{few} connections for 2 steps, {many} for 6"
