"""Repository memory as a user meets it: two tasks on one repository through `agentfleet serve`
(the second's prompt holds the first's digest), then `agentfleet memory` shows and clears it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agentfleet.names import workspace_id
from agentfleet.testing.scripted_llm import ScriptedLLM, reply, tool_call
from tests.test_serve import serving

FILES = {"app.py": "print('hello')\n"}


def cli(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "AGENTFLEET_SERVER": url,
        "AGENTFLEET_HOME": str(tmp_path / "home"),  # where it finds the server's token
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
    }
    command = [sys.executable, "-m", "agentfleet.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_the_second_served_task_gets_the_first_ones_memory_and_the_cli_shows_and_clears_it(
    repo_factory, tmp_path
) -> None:
    repo = str(repo_factory(FILES))
    script = [
        reply(None, tool_call("exec", {"command": "python3 app.py"})),
        reply("app.py prints hello."),
        reply(None, tool_call("recall", {"query": "what does app.py print"})),
        reply("It prints hello, as the first task found."),
    ]
    with ScriptedLLM(script) as llm, serving(tmp_path, llm.url) as url:
        first = cli(tmp_path, url, "submit", "What does app.py print?", "--repo", repo, "--wait")
        second = cli(tmp_path, url, "submit", "Remind me what app.py prints", "--repo", repo, "--wait")
        shown = cli(tmp_path, url, "memory", repo)
        listed = cli(tmp_path, url, "memory", workspace_id(repo), "--json")
        here = cli(tmp_path, url, "memory", repo, "--local")  # the server's AGENTFLEET_HOME, read directly
        cleared = cli(tmp_path, url, "memory", repo, "--clear")
        empty = cli(tmp_path, url, "memory", repo)
        requests = llm.requests
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    first_id = first.stdout.splitlines()[0]
    prompt = next(m["content"] for m in requests[2]["messages"] if m["role"] == "user")
    assert f"task {first_id}" in prompt and "app.py prints hello." in prompt
    recalled = next(m["content"] for m in requests[3]["messages"] if m["role"] == "tool")
    assert f"task {first_id}" in recalled and "ran: python3 app.py" not in recalled  # not a test command
    assert shown.returncode == 0 and "What does app.py print?" in shown.stdout, shown.stderr
    assert [e["task_id"] for e in json.loads(listed.stdout)][1] == first_id
    assert cleared.returncode == 0 and "2 memory entries forgotten" in cleared.stdout
    assert empty.returncode == 0 and "nothing in memory" in empty.stderr
    assert here.returncode == 0 and "What does app.py print?" in here.stdout, here.stderr
