"""The evaluation harness against the scripted model, and the shipped suite under evals/."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from agentfleet.evals import (
    EvalResult,
    EvalSuiteError,
    SdistSource,
    fetch_sdist,
    load_suite,
    missing_facts,
    prepare_repo,
    render_table,
    run_check,
    run_suite,
)
from agentfleet.settings import Settings
from agentfleet.testing.repos import git
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply, tool_call

SHIPPED = Path(__file__).resolve().parents[1] / "evals"
CALC = {
    "calc.py": "def add(a, b):\n    return a - b\n",
    "test_calc.py": "from calc import add\n\nassert add(2, 3) == 5, 'add(2, 3) should be 5'\nprint('1 passed')\n",
}
FIX = (
    "*** Begin Patch\n*** Update File: calc.py\n@@ def add(a, b):\n-    return a - b\n+    return a + b\n*** End Patch"
)
FIX_TASK = {"query": "Fix calc.py so python3 test_calc.py passes", "kind": "fix", "check": "python3 test_calc.py"}
SUMMARY_TASK = {"query": "What does this project do?", "kind": "summarize", "summary_contains": ["add", "numbers"]}
NO_ANSWER = "(the model gave no final answer)"


def write_task(suite: Path, name: str, spec: dict[str, Any], files: dict[str, str] | None = None) -> Path:
    folder = suite / name
    for rel, text in (files or CALC).items():
        (folder / "repo" / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / "repo" / rel).write_text(text)
    (folder / "task.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    suite = tmp_path / "suite"
    write_task(suite, "a-fix-applied", FIX_TASK)
    write_task(suite, "b-fix-ignored", FIX_TASK)
    write_task(suite, "c-summary-right", SUMMARY_TASK)
    write_task(suite, "d-summary-wrong", SUMMARY_TASK)
    return suite


def test_the_harness_scores_successes_and_failures_and_totals_them(suite: Path, settings: Settings) -> None:
    script = [
        reply(None, tool_call("apply_patch", {"patch": FIX})),
        reply(None, tool_call("exec", {"command": "python3 test_calc.py"})),
        reply("add() subtracted; it adds now."),
        look(),
        reply("I looked around and changed nothing."),
        reply(None, tool_call("read_file", {"path": "calc.py"})),
        reply("A tiny library that adds two numbers."),
        look(),
        reply("It is a web server."),
    ]
    seen: list[EvalResult] = []
    with ScriptedLLM(script) as llm:
        report = run_suite(suite, settings, model_url=llm.url, progress=seen.append)
    results = {r.name: r for r in report.results}
    assert [r.name for r in seen] == sorted(results), "progress hears of each task, in order"
    assert all(r.status == "SUCCEEDED" for r in report.results), "every run ended normally"
    fixed, ignored, right, wrong = (results[n] for n in sorted(results))
    assert fixed.success and fixed.reason == "" and (fixed.steps, fixed.tool_calls) == (3, 2)
    assert not ignored.success and "check failed (exit code 1)" in ignored.reason
    assert "add(2, 3) should be 5" in ignored.reason, "the check's output explains the failure"
    assert right.success and (right.steps, right.tool_calls) == (2, 1)
    assert not wrong.success and "summary lacks /add/, /numbers/" in wrong.reason
    totals = report.totals
    assert (totals.tasks, totals.succeeded, totals.success_rate) == (4, 2, 0.5)
    assert totals.mean_steps == (3 + 2 + 2 + 2) / 4
    assert totals.total_tokens == sum(r.tokens for r in report.results) > 0
    assert json.loads(json.dumps(report.to_json()))["totals"]["succeeded"] == 2
    assert not settings.home.exists(), "each task ran under a home of its own"


def test_the_table_shows_each_task_and_the_totals(suite: Path, settings: Settings) -> None:
    with ScriptedLLM([look(), reply("Adds two numbers."), look(), reply("No idea.")]) as llm:
        report = run_suite(suite, settings, model_url=llm.url, only=["c-summary-right", "d-summary-wrong"])
    table = render_table(report)
    assert table.row_count == 3
    console = Console(file=io.StringIO(), width=200)
    console.print(table)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "c-summary-right" in text and "✓" in text and "✗" in text
    assert "1/2" in text and "50%" in text


def test_an_unreachable_model_fails_every_task_with_the_reason(suite: Path, settings: Settings) -> None:
    configured = settings.model_copy(update={"llm_wait_s": 0})  # no waiting for it to come back
    report = run_suite(suite, configured, model_url="http://127.0.0.1:9/v1", only=["a-fix-applied", "c-summary-right"])
    assert [r.success for r in report.results] == [False, False]
    assert all(r.status == "FAILED" for r in report.results)
    assert all("task error: cannot reach the model" in r.reason for r in report.results)


def test_a_task_that_crashes_the_harness_is_a_failure_and_the_suite_goes_on(suite: Path, settings: Settings) -> None:
    write_task(suite, "0-broken", FIX_TASK, {**CALC, ".git": "not a git directory\n"})
    with ScriptedLLM([look(), reply("Adds two numbers.")]) as llm:
        report = run_suite(suite, settings, model_url=llm.url, only=["0-broken", "c-summary-right"])
    broken, after = report.results
    assert not broken.success and broken.status == "ERROR" and broken.reason.startswith("harness error:")
    assert after.success


def test_asking_for_an_unknown_task_is_an_error(suite: Path, settings: Settings) -> None:
    with pytest.raises(EvalSuiteError, match="no such task in the suite: nope"):
        run_suite(suite, settings, model_url="http://127.0.0.1:9/v1", only=["nope"])


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"query": "q", "kind": "refactor", "check": "true"}, "kind"),
        ({"kind": "fix", "check": "true"}, "query"),
        ({"query": "q", "kind": "fix", "check": "true", "max_step": 3}, "max_step"),
        ({"query": "q", "kind": "locate", "summary_contains": ["("]}, "summary_contains"),
        ({"query": "q", "kind": "locate"}, "give a condition"),
        ({"query": "q", "kind": "fix", "check": "true", "name": "other"}, "name"),
    ],
)
def test_a_malformed_task_is_rejected_naming_the_file_and_the_field(tmp_path: Path, spec: dict, field: str) -> None:
    folder = write_task(tmp_path / "suite", "bad", spec)
    with pytest.raises(EvalSuiteError) as caught:
        load_suite(tmp_path / "suite")
    assert str(folder / "task.json") in str(caught.value) and field in str(caught.value)


def test_an_empty_suite_or_a_task_without_files_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "suite").mkdir()
    with pytest.raises(EvalSuiteError, match="the suite is empty"):
        load_suite(tmp_path / "suite")
    (tmp_path / "suite" / "lonely").mkdir()
    with pytest.raises(EvalSuiteError, match=r"no task\.json"):
        load_suite(tmp_path / "suite")
    (tmp_path / "suite" / "lonely" / "task.json").write_text(json.dumps(FIX_TASK))
    with pytest.raises(EvalSuiteError, match="repo: missing or empty"):
        load_suite(tmp_path / "suite")
    (tmp_path / "suite" / "lonely" / "task.json").write_text("{not json")
    with pytest.raises(EvalSuiteError, match="cannot read it as JSON"):
        load_suite(tmp_path / "suite")


def test_the_shipped_suite_loads_and_covers_every_kind() -> None:
    tasks = load_suite(SHIPPED)
    assert len(tasks) >= 10
    assert {t.kind for t in tasks} == {"summarize", "locate", "fix", "add", "config"}
    assert [t.name for t in tasks] == sorted(t.name for t in tasks)
    for task in tasks:
        for path in task.repo.rglob("*"):
            if path.is_file():
                assert len(path.read_text().splitlines()) < 60, f"{path} is too long for a small model"


def test_every_shipped_check_fails_on_the_untouched_repository(tmp_path: Path, settings: Settings) -> None:
    checked = [t for t in load_suite(SHIPPED) if t.check]
    assert {t.kind for t in checked} >= {"fix", "add", "config"}
    for task in checked:
        assert task.check is not None
        repo = prepare_repo(task, tmp_path / task.name)
        result = run_check(task.check, repo, settings)
        assert result.exit_code != 0, f"{task.name}: the check passes before the agent did anything"


def test_no_shipped_summary_condition_holds_for_an_empty_or_parroted_answer() -> None:
    for task in [t for t in load_suite(SHIPPED) if t.summary_contains]:
        for answer in ("", NO_ANSWER, task.query):
            assert missing_facts(task.summary_contains, answer), f"{task.name}: {answer!r} would pass"


def test_a_task_on_a_real_project_is_made_from_its_sdist_with_the_bug_planted(tmp_path: Path) -> None:
    (task,) = [t for t in load_suite(SHIPPED) if t.name == "real-inflection-fix-ordinal"]
    repo = prepare_repo(task, tmp_path / "repo")
    source = (repo / "inflection" / "__init__.py").read_text()
    assert "if number % 100 in (11, 12):" in source and "(11, 12, 13)" not in source
    assert (repo / "test_inflection.py").is_file() and not list(repo.glob("*.egg-info"))
    assert git(repo, "log", "--format=%s") == "eval task real-inflection-fix-ordinal: inflection==0.5.1"


def test_an_sdist_that_does_not_match_its_digest_or_a_mutation_that_does_not_apply_is_refused(tmp_path: Path) -> None:
    wrong = SdistSource(sdist="inflection==0.5.1", sha256="0" * 64)
    with pytest.raises(EvalSuiteError, match="does not match its sha256"):
        fetch_sdist(wrong)
    (task,) = [t for t in load_suite(SHIPPED) if t.name == "real-inflection-fix-ordinal"]
    assert task.source is not None
    broken = task.source.mutate[0].model_copy(update={"old": "no such text"})
    bad = task.model_copy(update={"source": task.source.model_copy(update={"mutate": [broken]})})
    with pytest.raises(EvalSuiteError, match=r"not found exactly once in inflection/__init__\.py"):
        prepare_repo(bad, tmp_path / "repo")
