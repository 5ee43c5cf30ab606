"""Tool calls written as text become real calls; garbage becomes a readable parse error."""

from __future__ import annotations

import pytest

from agentfleet.agent.profiles import PROFILES, profile_for
from agentfleet.agent.textcalls import TextCall, recover_tool_calls

KNOWN = {"exec", "read_file", "apply_patch"}

FORMS = [
    ('```json\n{"name": "exec", "arguments": {"command": "ls"}}\n```', "json fence"),
    (
        'I will list files.\n```json\n{"name": "exec", "arguments": {"command": "ls"}}\n```\n',
        "json fence in prose",
    ),
    ('<tool_call>\n{"name": "exec", "arguments": {"command": "ls"}}\n</tool_call>', "tool_call tags"),
    ('<tool_call>{"name": "exec", "arguments": "{\\"command\\": \\"ls\\"}"}</tool_call>', "string arguments"),
    ('{"name": "exec", "arguments": {"command": "ls"}}', "bare json"),
    ('{"tool": "exec", "args": {"command": "ls"}}', "tool/args keys"),
    ('{"function": {"name": "exec", "arguments": {"command": "ls"}}}', "function wrapper"),
    (
        '<|channel|>commentary to=functions.exec <|constrain|>json<|message|>{"command": "ls"}<|call|>',
        "harmony",
    ),
    ('```\n{"name": "exec", "arguments": {"command": "ls"}}\n```', "unlabelled fence"),
]


@pytest.mark.parametrize(("content", "form"), FORMS, ids=[f for _, f in FORMS])
def test_every_text_form_seen_becomes_a_proper_call(content: str, form: str) -> None:
    recovery = recover_tool_calls(content, KNOWN)
    assert recovery.error is None
    assert recovery.calls == [TextCall("exec", {"command": "ls"})]


def test_several_tagged_calls_are_all_recovered() -> None:
    content = (
        '<tool_call>{"name": "read_file", "arguments": {"path": "a.py"}}</tool_call>\n'
        '<tool_call>{"name": "read_file", "arguments": {"path": "b.py"}}</tool_call>'
    )
    assert [c.arguments["path"] for c in recover_tool_calls(content, KNOWN).calls] == ["a.py", "b.py"]


@pytest.mark.parametrize(
    "content",
    [
        '<tool_call>{"name": "exec", "arguments": {"command": </tool_call>',
        '```json\n{"name": "exec", "arguments": {"command": "ls"\n```',
        '{"name": "exec", "arguments": ',
        '```json\n{"name": "rm_rf_everything", "arguments": {}}\n```',
    ],
)
def test_a_garbled_call_is_reported_as_could_not_parse(content: str) -> None:
    recovery = recover_tool_calls(content, KNOWN)
    assert recovery.calls == []
    assert recovery.error


def test_plain_prose_is_a_final_answer_not_a_call() -> None:
    recovery = recover_tool_calls("The repository has 3 modules. Nothing to change.", KNOWN)
    assert recovery.calls == [] and recovery.error is None


def test_a_bash_fence_is_a_call_only_under_the_text_protocol() -> None:
    content = "Let me look.\n```bash\nls -la\n```"
    assert recover_tool_calls(content, KNOWN).calls == []
    text = recover_tool_calls(content, KNOWN, shell_tool="exec")
    assert text.calls == [TextCall("exec", {"command": "ls -la"})]


def test_a_python_fence_in_an_answer_is_not_mistaken_for_a_call() -> None:
    content = 'Fixed it:\n```python\ndef f():\n    return {"name": "x"}\n```'
    assert recover_tool_calls(content, KNOWN, shell_tool="exec").calls == []


@pytest.mark.parametrize(
    ("content", "command"),
    [
        ("cat -n README.md", "cat -n README.md"),
        ("`grep -rn quota .`", "grep -rn quota ."),
        ("$ python3 test_calc.py", "python3 test_calc.py"),
        ("  ls  ", "ls"),
    ],
)
def test_a_reply_that_is_one_bare_command_line_runs_under_the_text_protocol(content: str, command: str) -> None:
    assert recover_tool_calls(content, KNOWN, shell_tool="exec").calls == [TextCall("exec", {"command": command})]
    assert recover_tool_calls(content, KNOWN).calls == []  # the native protocol never guesses


@pytest.mark.parametrize(
    "content",
    [
        "cat is the command I would use.",
        "grep found the function in billing/limits.py",
        "git: the repository has two branches",
        "ls\nshows three files",
        "The port is 5433.",
    ],
)
def test_an_answer_that_starts_with_a_command_word_is_still_an_answer(content: str) -> None:
    assert recover_tool_calls(content, KNOWN, shell_tool="exec").calls == []


def test_profiles_are_chosen_by_model_family_and_by_name() -> None:
    assert profile_for("openai/gpt-oss-120b").name == "gpt-oss"
    assert profile_for("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf").protocol == "text"
    assert profile_for("gpt-4.1").protocol == "native"
    assert profile_for("anything", "text") is PROFILES["text"]
    with pytest.raises(ValueError, match="unknown model profile 'nope'"):
        profile_for("x", "nope")
