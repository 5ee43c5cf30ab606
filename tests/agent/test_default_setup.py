"""Setup reaches the network (and gets the setup-only environment) while the agent's own commands do
not; a Python project without a setup of its own gets the default one: a `.venv` with the project,
its test extras and pytest, which the agent's commands find first; it is reused by the next task.

The packages come from a local wheelhouse (pytest and setuptools, downloaded once from PyPI into
~/.cache/agentfleet-tests) served on a loopback port: reaching it at all needs the network, and the
run needs nothing else from outside."""

from __future__ import annotations

import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskEvent, TaskRequest, TaskStatus
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call

WHEELHOUSE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "agentfleet-tests" / "wheelhouse"
PROJECT = {
    "pyproject.toml": (
        '[build-system]\nrequires = ["setuptools>=64"]\nbuild-backend = "setuptools.build_meta"\n\n'
        '[project]\nname = "tinycalc"\nversion = "0.1"\n\n[project.optional-dependencies]\ntest = []\n\n'
        '[tool.setuptools]\npy-modules = ["calc"]\n'
    ),
    "calc.py": "def add(a, b):\n    return a + b\n",
    "test_calc.py": "from calc import add\n\n\ndef test_add():\n    assert add(2, 3) == 5\n",
}


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    marker = WHEELHOUSE / ".complete"
    if not marker.exists():
        WHEELHOUSE.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(WHEELHOUSE)]
        proc = subprocess.run([*argv, "pytest", "setuptools", "wheel"], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            pytest.skip(f"the test wheelhouse could not be downloaded from PyPI: {proc.stderr.strip()[-300:]}")
        marker.touch()
    return WHEELHOUSE


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        self.server.hits.append(self.path)  # type: ignore[attr-defined]


@pytest.fixture
def index(wheelhouse: Path) -> Iterator[tuple[str, list[str]]]:
    """The wheelhouse over HTTP on a loopback port: (URL, the paths asked for)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(wheelhouse)))
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", server.hits  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


def run(script: list[dict[str, Any]], repo: Path, settings: Settings, **options: Any) -> tuple[Task, list[TaskEvent]]:
    events: list[TaskEvent] = []
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query="Run the tests", repo_url=str(repo), options=options)
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir), [events.append])
    return task, events


def outputs(events: list[TaskEvent]) -> list[str]:
    return [e.data["output"] for e in events if e.kind is EventKind.TOOL_RESULT]


def setups(events: list[TaskEvent]) -> list[dict[str, Any]]:
    return [e.data for e in events if e.kind is EventKind.WORKSPACE and e.data.get("step") == "setup"]


def fetch(url: str) -> str:
    return f"python3 -c \"import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).status)\""


def test_setup_has_network_and_its_environment_and_the_agents_commands_have_neither(
    repo_factory, settings, index
) -> None:
    url, hits = index
    configured = settings.model_copy(update={"setup_env": {"INDEX_TOKEN": "s3cret-setup-only"}})
    setup = f'{fetch(url)} > reached.txt && echo "token=$INDEX_TOKEN" >> reached.txt'
    probe = f'cat reached.txt; {fetch(url)} || echo "no network"; echo "agent sees token=[$INDEX_TOKEN]"'
    script = [
        reply(None, tool_call("exec", {"command": probe})),
        reply("Setup reached the index; my commands did not."),
    ]
    task, events = run(
        script, repo_factory({"README.md": "x\n", ".gitignore": "reached.txt\n"}), configured, setup=setup
    )
    assert task.status is TaskStatus.SUCCEEDED, task.error
    seen = outputs(events)[0]
    assert "200\ntoken=s3cret-setup-only" in seen, "setup fetched over the network, with its environment"
    assert "no network" in seen and "agent sees token=[]" in seen, "the agent's command got neither"
    assert hits, "the index was really reached"


def test_a_python_project_gets_a_venv_whose_pytest_the_agent_uses_and_the_next_task_reuses_it(
    repo_factory, settings, index
) -> None:
    url, _ = index
    configured = settings.model_copy(update={"setup_env": {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": url}})
    repo = repo_factory(PROJECT)
    check = [
        reply(None, tool_call("exec", {"command": "command -v pytest python; pytest -q"})),
        reply("1 test passes."),
    ]
    task, events = run(check, repo, configured)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    (ran,) = setups(events)
    assert ran["action"] == "ran" and ran["script"] == ".: default Python setup"
    seen = outputs(events)[0]
    root = configured.workspaces_dir / task.workspace_id
    assert f"{root}/.venv/bin/pytest\n{root}/.venv/bin/python" in seen, "the .venv comes first on PATH"
    assert "1 passed" in seen
    assert task.result is not None and task.result.patch is None, "the .venv is no part of the patch"

    again, events = run(check, repo, configured)
    assert again.status is TaskStatus.SUCCEEDED, again.error
    assert [s["action"] for s in setups(events)] == ["reused"]
    assert "1 passed" in outputs(events)[0]


def test_a_failed_default_setup_is_reported_and_the_agent_works_without_it(repo_factory, settings) -> None:
    configured = settings.model_copy(update={"setup_env": {"PIP_NO_INDEX": "1"}})  # nothing to install from
    script = [reply(None, tool_call("exec", {"command": "ls"})), reply("The project has calc.py.")]
    task, events = run(script, repo_factory(PROJECT), configured)
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert [s["action"] for s in setups(events)] == ["failed"]
    logs = [e.data["message"] for e in events if e.kind is EventKind.LOG]
    assert any(
        m.startswith("the .: default Python setup failed (exit code 1); the agent works without it") for m in logs
    )


def test_a_blank_setup_option_turns_the_default_off(repo_factory, settings) -> None:
    script = [reply(None, tool_call("exec", {"command": "ls -a"})), reply("calc.py and its test.")]
    task, events = run(script, repo_factory(PROJECT), settings, setup="")
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert [s["action"] for s in setups(events)] == ["none"]
    assert ".venv" not in outputs(events)[0]
