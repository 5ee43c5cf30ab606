"""`agentfleet serve` end to end over real HTTP: a task submitted, dispatched through the local
queue as a CloudEvent, worked by the real agent process, followed as Server-Sent Events."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentfleet.client import Client
from agentfleet.local.token import read_token
from agentfleet.net import free_port
from agentfleet.testing.polling import stop_process, wait_for
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply, tool_call
from tests.processes import pids_running, unique_sleep_seconds

FILES = {"app.py": "print('hello')\n"}


def local_client(url: str, tmp_path: Path) -> Client:
    """A client with the token the server keeps in its home (none is configured)."""
    return Client(url, token=read_token(tmp_path / "home"))


def auth(tmp_path: Path) -> dict[str, str]:
    return {"Authorization": f"Bearer {read_token(tmp_path / 'home')}"}


@contextlib.contextmanager
def serving(tmp_path: Path, llm_url: str, *args: str, **env: str) -> Iterator[str]:
    with server_process(tmp_path, llm_url, *args, **env) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(
    tmp_path: Path, llm_url: str, *args: str, **env: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "AGENTFLEET_HOME": str(tmp_path / "home"),
        "GPT_OSS_URL": llm_url,
        "AGENTFLEET_REAP_INTERVAL_S": "1",
        **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {}),
        **env,
    }
    log_path = tmp_path / f"serve-{port}.log"  # a file, not a pipe: nobody reads a pipe, and a full one blocks
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agentfleet.cli", "serve", "--port", str(port), *args],
        cwd=tmp_path,
        env=environ,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not come up"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.1)
        yield url, proc
    finally:
        stop_process(proc, timeout_s=15)
        log.close()


def test_a_task_posted_over_http_is_followed_as_sse_until_it_succeeds(repo_factory, tmp_path) -> None:
    script = [
        reply(None, tool_call("exec", {"command": "sleep 2; python3 app.py"})),
        reply("app.py prints hello."),
    ]
    with ScriptedLLM(script) as llm, serving(tmp_path, llm.url) as url:
        client = local_client(url, tmp_path)
        created = client.submit({"query": "What does app.py print?", "repo_url": str(repo_factory(FILES))})
        task_id = created["task_id"]
        deadline = time.monotonic() + 60
        containers: dict = {}
        while not containers.get("count") and time.monotonic() < deadline:
            containers = client.containers()
        assert containers["count"] == 1, "the execution shows while it runs"
        [executions] = containers["workspaces"].values()
        assert executions[0]["task_id"] == task_id
        kinds = [(e.seq, e.kind.value, e.data.get("status")) for e in client.stream(task_id)]
        final = client.task(task_id)
    assert final.status.value == "SUCCEEDED", final.error
    assert final.result and final.result.summary == "app.py prints hello."
    seqs = [seq for seq, _, _ in kinds]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    statuses = [status for _, kind, status in kinds if kind == "status"]
    assert statuses == ["QUEUED", "DISPATCHED", "RUNNING", "SUCCEEDED"]
    assert "tool_result" in {k for _, k, _ in kinds}


def test_binding_beyond_loopback_without_a_token_is_refused(tmp_path) -> None:
    environ = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "AGENTFLEET_HOME": str(tmp_path / "home"),
        "GPT_OSS_URL": "http://127.0.0.1:9/v1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "agentfleet.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "AGENTFLEET_API_TOKEN" in proc.stderr


@pytest.mark.parametrize("token", ["s3cret-token"])
def test_a_token_protected_server_answers_only_with_the_token(tmp_path, token) -> None:
    with serving(tmp_path, "http://127.0.0.1:9/v1", AGENTFLEET_API_TOKEN=token) as url:
        assert httpx.get(f"{url}/tasks").status_code == 401
        assert httpx.get(f"{url}/tasks", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert json.loads(httpx.get(f"{url}/health").text)["status"] == "ok"


def test_a_cancel_during_a_run_stops_the_execution(repo_factory, tmp_path) -> None:
    script = [reply(None, tool_call("exec", {"command": "sleep 600"})), reply("never")]
    with ScriptedLLM(script) as llm, serving(tmp_path, llm.url) as url:
        client = local_client(url, tmp_path)
        task_id = client.submit({"query": "x", "repo_url": str(repo_factory(FILES))})["task_id"]
        wait_for(lambda: any(e.kind.value == "tool_call" for e in client.events(task_id)), what="the tool call")
        assert client.cancel(task_id).status.value == "CANCELLED"
        wait_for(lambda: client.containers()["count"] == 0, timeout_s=30, what="the execution to stop")
        response = httpx.post(f"{url}/tasks/{task_id}/cancel", headers=auth(tmp_path))
        final = client.task(task_id)
    assert final.status.value == "CANCELLED"
    assert response.status_code == 409 and "CANCELLED" in response.json()["error"]


def test_every_accepted_task_ends_after_the_server_is_killed(repo_factory, tmp_path) -> None:
    slow_answer = {"delay_s": 2.0, "content": "Done: app.py prints hello."}
    repo_a, repo_b = str(repo_factory(FILES, name="a")), str(repo_factory(FILES, name="b"))
    with ScriptedLLM([look(), slow_answer], repeat_last=True, per_turn=True) as llm:
        with server_process(tmp_path, llm.url) as (url, proc):
            client = local_client(url, tmp_path)
            ids = [
                client.submit({"query": f"t{i}", "repo_url": repo})["task_id"]
                for i, repo in enumerate([repo_a, repo_a, repo_b])
            ]
            wait_for(lambda: any(client.task(i).status.value == "RUNNING" for i in ids), what="a running task")
            proc.kill()  # SIGKILL: no cleanup at all
            proc.wait()
        with serving(tmp_path, llm.url) as url:
            client = local_client(url, tmp_path)
            wait_for(lambda: all(client.task(i).status.final for i in ids), timeout_s=90, what="every task to end")
            finals = [client.task(i) for i in ids]
            runs = {i: [e for e in client.events(i) if e.data.get("status") == "RUNNING"] for i in ids}
    assert [t.status.value for t in finals] == ["SUCCEEDED"] * 3, [t.error for t in finals]
    for task in finals:
        assert len(runs[task.id]) == task.attempt, "one run per attempt, never two at once"


def test_the_cli_client_submits_waits_and_lists(repo_factory, tmp_path) -> None:
    script = [reply(None, tool_call("exec", {"command": "python3 app.py"})), reply("It prints hello.")]

    def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ["PATH"],
            "HOME": os.environ.get("HOME", "/root"),
            "AGENTFLEET_SERVER": url,
            "AGENTFLEET_HOME": str(tmp_path / "home"),  # where it finds the server's token
        }
        return subprocess.run(
            [sys.executable, "-m", "agentfleet.cli", *args], env=env, capture_output=True, text=True, timeout=120
        )

    with ScriptedLLM(script) as llm, serving(tmp_path, llm.url) as url:
        submitted = cli("submit", "What does app.py print?", "--repo", str(repo_factory(FILES)), "--wait", url=url)
        task_id = submitted.stdout.splitlines()[0]
        listed = cli("tasks", "--json", url=url)
        status = cli("status", task_id, url=url)
        logs = cli("logs", task_id, url=url)
        missing = cli("status", "nope", url=url)
    assert submitted.returncode == 0, submitted.stderr
    assert "It prints hello." in submitted.stdout and "SUCCEEDED" in submitted.stderr
    assert [t["id"] for t in json.loads(listed.stdout)] == [task_id]
    assert json.loads(status.stdout)["status"] == "SUCCEEDED"
    assert [json.loads(line)["seq"] for line in logs.stdout.splitlines()][:3] == [1, 2, 3]
    assert missing.returncode == 1 and "HTTP 404" in missing.stderr


def test_the_seeds_files_only_example_runs_in_a_scratch_workspace_of_the_uploaded_files(tmp_path) -> None:
    """The seed's third example as written: upload two files, submit `files` with no repository."""
    compare = (
        "*** Begin Patch\n*** Add File: comparison.md\n+Both READMEs describe a parser; repo2 adds a CLI.\n"
        "*** End Patch"
    )
    script = [
        reply(None, tool_call("exec", {"command": "ls; cat repo1_readme.md repo2_readme.md"})),
        reply(None, tool_call("apply_patch", {"patch": compare})),
        reply("Both describe a parser; repo2 also has a CLI. The comparison is in comparison.md."),
    ]
    with ScriptedLLM(script) as llm, serving(tmp_path, llm.url) as url:
        headers = auth(tmp_path)
        for name, text in [("repo1_readme.md", "# parser\n"), ("repo2_readme.md", "# parser with a CLI\n")]:
            stored = httpx.post(f"{url}/files", params={"name": name}, content=text.encode(), headers=headers)
            assert stored.status_code == 201, stored.text
        seed = {
            "query": "Compare the README files from multiple repositories",
            "files": ["repo1_readme.md", "repo2_readme.md"],
        }
        created = httpx.post(f"{url}/orchestrate", json=seed, headers=headers).json()
        client = local_client(url, tmp_path)
        wait_for(lambda: client.task(created["task_id"]).status.final, timeout_s=60, what="the task to end")
        task = client.task(created["task_id"])
        listing = next(m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool")
    assert task.status.value == "SUCCEEDED", task.error
    assert "repo1_readme.md\nrepo2_readme.md" in listing and "# parser with a CLI" in listing
    assert task.result is not None and task.result.changed == ["comparison.md"]
    patch = (tmp_path / "home" / "artifacts" / task.result.patch).read_text()
    assert "+Both READMEs describe a parser" in patch and "repo1_readme.md" not in patch
    assert not (tmp_path / "home" / "workspaces" / task.workspace_id).exists(), "a scratch workspace is removed after"


def test_a_cancelled_tasks_command_is_dead_before_the_next_task_on_its_workspace_runs(repo_factory, tmp_path) -> None:
    marker = unique_sleep_seconds()
    ticker = f"(while true; do echo tick >> app.py; sleep 0.05; done) & sleep {marker}"
    script = [
        reply(None, tool_call("exec", {"command": ticker, "timeout_s": 600})),
        look(),
        reply("Nothing to change."),
    ]
    repo = str(repo_factory(FILES))
    with ScriptedLLM(script) as llm, serving(tmp_path, llm.url) as url:
        client = local_client(url, tmp_path)
        first = client.submit({"query": "tick", "repo_url": repo})["task_id"]
        wait_for(lambda: pids_running(marker), what="the command to run")
        client.cancel(first)
        wait_for(lambda: not pids_running(marker), timeout_s=20, what="the cancelled command to be killed")
        second = client.submit({"query": "look", "repo_url": repo})["task_id"]
        wait_for(lambda: client.task(second).status.final, timeout_s=60, what="the next task to end")
        final = client.task(second)
    assert final.status.value == "SUCCEEDED", final.error
    assert final.result is not None and final.result.patch is None, "nothing of the cancelled task's command"


def test_with_no_token_configured_the_server_makes_one_and_requires_it(tmp_path) -> None:
    with serving(tmp_path, "http://127.0.0.1:9/v1") as url:
        kept = tmp_path / "home" / "api-token"
        assert kept.stat().st_mode & 0o777 == 0o600
        assert httpx.get(f"{url}/tasks").status_code == 401
        assert httpx.get(f"{url}/tasks", headers=auth(tmp_path)).status_code == 200
        public = httpx.get(f"{url}/health").json()
        full = httpx.get(f"{url}/health", headers=auth(tmp_path)).json()
    assert public == {"status": "ok", "backends": {}}, "no paths or counts without the token"
    assert set(full["backends"]) == {"store", "queue", "jobs"}


def test_a_sandboxed_command_let_onto_the_network_cannot_submit_a_task(repo_factory, tmp_path) -> None:
    from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, grant_workspace

    workspace = tmp_path / "ws"
    workspace.mkdir()
    grant_workspace(workspace, 65534, 65534)
    with serving(tmp_path, "http://127.0.0.1:9/v1") as url:
        body = json.dumps({"query": "injected", "repo_url": str(repo_factory(FILES))})
        post = (
            "import sys, urllib.request, urllib.error\n"
            f"req = urllib.request.Request('{url}/orchestrate', data=sys.argv[1].encode(), "
            "headers={'Content-Type': 'application/json'})\n"
            "try:\n    print('status', urllib.request.urlopen(req).status)\n"
            "except urllib.error.HTTPError as e:\n    print('status', e.code)\n"
        )
        command = f"python3 -c {shlex.quote(post)} {shlex.quote(body)}; cat {tmp_path / 'home' / 'api-token'}"
        result = Sandbox(workspace, SandboxConfig(network=True)).run(command, timeout_s=30)
        tasks = local_client(url, tmp_path).tasks()
    assert "status 401" in result.output and "No such file or directory" in result.output
    assert tasks == [], "no task was created from inside the sandbox"


def test_a_request_for_another_host_or_from_a_web_page_is_refused(tmp_path) -> None:
    with serving(tmp_path, "http://127.0.0.1:9/v1") as url:
        port = url.rsplit(":", 1)[1]
        rebound = httpx.get(f"{url}/tasks", headers={**auth(tmp_path), "Host": "evil.example"})
        cross_site = httpx.get(f"{url}/tasks", headers={**auth(tmp_path), "Origin": "http://evil.example"})
        same_site = httpx.get(f"{url}/tasks", headers={**auth(tmp_path), "Origin": f"http://localhost:{port}"})
    assert rebound.status_code == 403 and "'evil.example' is not this server" in rebound.json()["error"]
    assert cross_site.status_code == 403 and "web origin" in cross_site.json()["error"]
    assert same_site.status_code == 200


def test_a_blank_token_is_refused_rather_than_taken_for_none(tmp_path) -> None:
    environ = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), "AGENTFLEET_API_TOKEN": "   "}
    proc = subprocess.run(
        [sys.executable, "-m", "agentfleet.cli", "serve", "--host", "0.0.0.0", "--port", "0"],
        env={**environ, "AGENTFLEET_HOME": str(tmp_path / "home")},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "AGENTFLEET_API_TOKEN is blank" in proc.stderr, proc.stderr
