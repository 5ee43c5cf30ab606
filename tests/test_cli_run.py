"""`agentfleet run` end to end, as a person runs it: a real process, a real repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from agentfleet.testing.repos import git
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply, tool_call

BUGGY = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('1 passed')\n",
}
FIX = (
    "*** Begin Patch\n*** Update File: calc.py\n@@ def add(a, b):\n-    return a - b\n+    return a + b\n*** End Patch"
)
SCRIPT = [
    reply(None, tool_call("read_file", {"path": "calc.py"})),
    reply(None, tool_call("apply_patch", {"patch": FIX})),
    reply(None, tool_call("exec", {"command": "python3 test_calc.py"})),
    reply("Fixed add(): it subtracted. The test passes now."),
]


def agentfleet(
    tmp_path: Path, *args: str, llm_url: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "AGENTFLEET_HOME": str(tmp_path / "home"),
        "GPT_OSS_URL": llm_url,
        "LLM_API_KEY": "sk-cli-test",
        **(extra_env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "agentfleet.cli", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_run_fixes_a_failing_test_and_pushes_a_branch(repo_factory, tmp_path) -> None:
    source = repo_factory(BUGGY)
    remote = tmp_path / "remote.git"
    git(tmp_path, "clone", "-q", "--bare", str(source), str(remote))
    with ScriptedLLM(SCRIPT) as llm:
        proc = agentfleet(
            tmp_path,
            "run",
            "Fix the failing test",
            "--repo",
            str(remote),
            "--push-branch",
            "--json",
            llm_url=llm.url,
        )
        tool_outputs = [m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool"]
    assert proc.returncode == 0, proc.stderr
    task = json.loads(proc.stdout)
    assert task["status"] == "SUCCEEDED"
    assert "calc.py | 2 +-" in task["result"]["diff_stat"]
    patch = (tmp_path / "home" / "artifacts" / task["result"]["patch"]).read_text()
    assert "+    return a + b" in patch
    assert "1 passed" in tool_outputs[-1], "the test ran inside the sandbox and passed"
    branch = f"agentfleet/{task['id']}"
    assert task["result"]["branch"] == branch
    assert git(remote, "show", f"{branch}:calc.py") == "def add(a, b):\n    return a + b"
    assert git(remote, "show", "main:calc.py").endswith("a - b"), "main is untouched"
    assert "step 1" in proc.stderr and "apply_patch" in proc.stderr, "live steps are shown on stderr"


def test_run_prints_the_summary_and_diff_stat_without_json(repo_factory, tmp_path) -> None:
    with ScriptedLLM(SCRIPT) as llm:
        proc = agentfleet(tmp_path, "run", "Fix it", "--repo", str(repo_factory(BUGGY)), llm_url=llm.url)
    assert proc.returncode == 0, proc.stderr
    assert "Fixed add()" in proc.stdout
    assert "calc.py | 2 +-" in proc.stdout


def test_run_reports_what_was_done_the_checks_and_a_missing_change(repo_factory, tmp_path) -> None:
    with ScriptedLLM(SCRIPT) as llm:
        proc = agentfleet(
            tmp_path,
            "run",
            "Fix it",
            "--repo",
            str(repo_factory(BUGGY)),
            "--check",
            "python3 test_calc.py",
            llm_url=llm.url,
        )
    assert proc.returncode == 0, proc.stderr
    assert "changed: 1 file(s): calc.py" in proc.stderr
    assert "check 1: `python3 test_calc.py` ✓ passed (exit 0" in proc.stderr
    assert "tool calls: 3 (read_file ×1, apply_patch ×1, exec ×1)" in proc.stderr
    unchanged = [look(), reply("It looks fine to me: add() adds.")]
    with ScriptedLLM(unchanged) as llm:
        proc = agentfleet(tmp_path, "run", "Fix the failing test", "--repo", str(repo_factory(BUGGY)), llm_url=llm.url)
    assert "no changes made" in proc.stderr and "the task asked for a change" in proc.stderr


def test_run_shows_progress_while_the_model_writes_a_long_reply(repo_factory, tmp_path) -> None:
    slow = {"content": "The project has one module, calc.py, with add(); its test fails.", "stream_delay_s": 0.35}
    with ScriptedLLM([look(), slow]) as llm:
        proc = agentfleet(tmp_path, "run", "Summarize calc", "--repo", str(repo_factory(BUGGY)), llm_url=llm.url)
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if "model writing:" in line]
    assert len(progress) >= 2, proc.stderr
    assert progress[-1].rstrip().endswith(" s") and "tokens" in progress[-1]


def test_input_files_and_several_repositories_reach_the_workspace(repo_factory, tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("remember the milk\n")
    first, second = repo_factory(BUGGY, name="alpha"), repo_factory({"b.txt": "beta\n"}, name="beta")
    script = [
        reply(None, tool_call("exec", {"command": "cat .agentfleet/inputs/notes.txt; ls alpha beta"})),
        reply("Read the notes."),
    ]
    with ScriptedLLM(script) as llm:
        proc = agentfleet(
            tmp_path,
            "run",
            "Read the notes",
            "--repo",
            str(first),
            "--repo",
            str(second),
            "--file",
            str(notes),
            "--json",
            llm_url=llm.url,
        )
        output = next(m["content"] for m in llm.requests[-1]["messages"] if m["role"] == "tool")
        prompt = llm.requests[0]["messages"][1]["content"]
    assert proc.returncode == 0, proc.stderr
    assert "remember the milk" in output and "calc.py" in output and "b.txt" in output
    assert "- alpha:" in prompt and "- beta:" in prompt and ".agentfleet/inputs/notes.txt" in prompt
    assert json.loads(proc.stdout)["result"]["patch"] is None, "input files are not part of the patch"


def test_an_unreachable_model_exits_nonzero_with_a_reason_and_no_traceback(repo_factory, tmp_path) -> None:
    proc = agentfleet(
        tmp_path, "run", "x", "--repo", str(repo_factory(BUGGY)), llm_url="http://127.0.0.1:9/v1",
        extra_env={"AGENTFLEET_LLM_WAIT_S": "1"},
    )  # fmt: skip
    assert proc.returncode == 1
    assert "cannot reach the model at http://127.0.0.1:9/v1" in proc.stderr
    assert "waiting for the model" in proc.stderr, "it waited its budget, and said so"
    assert "Traceback" not in proc.stderr + proc.stdout


def test_an_invalid_task_is_refused_before_anything_runs(tmp_path) -> None:
    proc = agentfleet(tmp_path, "run", "x", "--repo", "https://tok:secret@github.com/a/b", llm_url="http://x")
    assert proc.returncode == 2
    assert "embeds credentials" in proc.stderr and "secret" not in proc.stderr.replace("credentials", "")


def test_without_gpt_oss_url_the_embedded_model_starts_and_really_answers(repo_factory, tmp_path) -> None:
    env_model = {"AGENTFLEET_EMBEDDED_MODEL": "qwen2.5-coder-0.5b", "AGENTFLEET_DEFAULT_MAX_TOKENS": "1"}
    proc = agentfleet(
        tmp_path, "run", "List the files", "--repo", str(repo_factory(BUGGY)), "--json", llm_url="", extra_env=env_model
    )
    assert "starting the embedded model qwen2.5-coder-0.5b" in proc.stderr
    task = json.loads(proc.stdout)
    assert task["usage"]["llm_calls"] == 1 and task["usage"]["completion_tokens"] > 0, "a real model answered"
    assert task["error"] == "stopped: token limit of 1 reached"


def test_eval_scores_a_suite_against_any_endpoint(tmp_path) -> None:
    suite = tmp_path / "suite"
    (suite / "say-hi" / "repo").mkdir(parents=True)
    (suite / "say-hi" / "repo" / "hello.txt").write_text("hi\n")
    (suite / "say-hi" / "task.json").write_text(
        json.dumps({"query": "What does hello.txt say?", "kind": "summarize", "summary_contains": ["\\bhi\\b"]})
    )
    with ScriptedLLM([look(), reply("It says hi.")]) as llm:
        proc = agentfleet(tmp_path, "eval", str(suite), "--model-url", llm.url, "--json", llm_url="")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [(r["name"], r["success"]) for r in report["results"]] == [("say-hi", True)]


def test_run_mcp_names_a_shared_server_and_an_unknown_one_is_refused_saying_what_is_configured(
    repo_factory, tmp_path
) -> None:
    proc = agentfleet(
        tmp_path, "run", "Look", "--repo", str(repo_factory(BUGGY)), "--mcp", "nowhere", llm_url="http://127.0.0.1:9/v1"
    )
    assert proc.returncode != 0
    assert "MCP server 'nowhere' is not configured here" in proc.stderr
