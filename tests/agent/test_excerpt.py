"""The prompt's excerpt of a repository: what it shows, in which order, and what it never reads."""

from __future__ import annotations

import os
from pathlib import Path

from agentfleet.agent.excerpt import FILE_LINES, excerpt
from agentfleet.agent.work import work_task
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.runtime.filewalk import iter_files
from agentfleet.tasks import Task, TaskRequest, TaskStatus
from agentfleet.testing.scripted_llm import ScriptedLLM, reply


def _tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def _excerpt(root: Path, budget: int = 3500) -> str:
    return excerpt(root, iter_files(root, root), budget)


def test_the_readme_comes_first_then_entry_points_then_other_sources_and_small_data(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "zeta.py": "Z = 1\n",
            "main.py": "import zeta\n",
            "README.md": "# Demo\nConverts things.\n",
            "data.csv": "a,b\n1,2\n",
            "tests/test_main.py": "assert True\n",
            "test_zeta.py": "assert True\n",
            "setup.py": "from setuptools import setup\n",
            "notes.bin": b"\x00\x01\x02",
        },
    )
    shown = _excerpt(root)
    heads = [line for line in shown.splitlines() if line.startswith("--- ")]
    assert heads == ["--- README.md ---", "--- main.py ---", "--- zeta.py ---", "--- data.csv ---"]
    assert "Converts things." in shown and "a,b" in shown


def test_a_long_file_shows_its_first_lines_and_says_there_is_more(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"app.py": "".join(f"line_{i} = {i}\n" for i in range(200))})
    shown = _excerpt(root)
    assert f"line_{FILE_LINES - 1} = " in shown
    assert f"line_{FILE_LINES} = " not in shown
    assert shown.endswith("[…]")


def test_the_budget_bounds_the_whole_excerpt(tmp_path: Path) -> None:
    root = _tree(tmp_path, {f"mod{i}.py": f"# module {i}\n" + "x = 1\n" * 30 for i in range(20)})
    shown = _excerpt(root, budget=1000)
    assert 0 < len(shown) <= 1000
    assert _excerpt(root, budget=100) == ""


def test_a_link_is_never_followed_out_of_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP-SECRET-TOKEN\n")
    root = _tree(tmp_path / "repo", {"main.py": "print('hi')\n"})
    os.symlink(outside / "secret.txt", root / "README.md")
    os.symlink(outside, root / "lib")
    os.symlink(outside / "secret.txt", root / "core.py")
    shown = _excerpt(root)
    assert "TOP-SECRET-TOKEN" not in shown
    assert "--- main.py ---" in shown


def test_a_fifo_posing_as_a_source_file_does_not_block(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"main.py": "print('hi')\n"})
    os.mkfifo(root / "app.py")
    shown = _excerpt(root)
    assert "--- app.py ---" not in shown and "print('hi')" in shown


REPO = {
    "README.md": "# Tempconv\nPrints each city's temperature in Fahrenheit.\n",
    "convert.py": "def c_to_f(c):\n    return c * 9 / 5 + 32\n",
}


def _run(repo_factory, settings, query: str, script: list[dict]) -> tuple[Task, list[dict]]:
    configured = settings.model_copy(update={"model_profile": "text"})
    with ScriptedLLM(script) as llm:
        configured = configured.model_copy(update={"gpt_oss_url": llm.url})
        request = TaskRequest(query=query, repo_url=str(repo_factory(REPO)))
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))
        return task, llm.requests


def test_a_summary_task_shows_the_files_and_may_answer_from_them_without_a_command(repo_factory, settings) -> None:
    # The answer repeats the README's own words: that is quoting the files, not echoing the harness.
    answer = "Tempconv prints each city's temperature in Fahrenheit; convert.py has c_to_f."
    task, requests = _run(repo_factory, settings, "What does this project do?", [reply(answer)])
    prompt = next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")
    assert "--- README.md ---" in prompt and "return c * 9 / 5 + 32" in prompt
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert task.result and task.result.summary == answer
    assert len(requests) == 1


def test_a_locate_task_is_shown_the_files_but_must_still_search_before_answering(repo_factory, settings) -> None:
    script = [reply("c_to_f is in convert.py."), reply("```bash\ngrep -n c_to_f convert.py\n"), reply("convert.py:1")]
    task, requests = _run(repo_factory, settings, "Which file defines c_to_f?", script)
    prompt = next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")
    assert "--- convert.py ---\n   1  def c_to_f(c):" in prompt
    said = [m["content"] for m in requests[-1]["messages"] if m["role"] == "user"]
    assert any("You have not run any command yet" in s for s in said)
    assert task.status is TaskStatus.SUCCEEDED


def test_other_kinds_of_task_get_no_excerpt(repo_factory, settings) -> None:
    script = [reply("```bash\ncat convert.py\n"), reply("Nothing to add.")]
    _, requests = _run(repo_factory, settings, "Add a function f_to_c to convert.py", script)
    prompt = next(m["content"] for m in requests[0]["messages"] if m["role"] == "user")
    assert "--- README.md ---" not in prompt and "Start of the main files" not in prompt
