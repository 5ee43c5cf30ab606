"""The non-answer classifier and the change-request rule, on the replies seen in real runs."""

from __future__ import annotations

import pytest

from agentfleet.agent.answers import NUDGES, asks_for_change, classify, echoes, task_kind
from agentfleet.agent.loop import FINAL_ANSWER, NUDGE
from agentfleet.agent.profiles import TEXT_PROTOCOL_PROMPT

HARNESS = [TEXT_PROTOCOL_PROMPT, NUDGE, FINAL_ANSWER]


@pytest.mark.parametrize(
    ("reply", "tool_calls", "kind"),
    [
        ("", 3, "empty"),
        ("   \n", 3, "empty"),
        ("The project adds numbers.", 0, "did_not_look"),
        (
            "I have not run any command yet. Look at the repository first (list and read the relevant files), "
            "then answer.",
            2,
            "echoes_instructions",
        ),
        (
            "Stop using tools now. Give your final answer: summarize what you did and what you found.",
            4,
            "echoes_instructions",
        ),
        (
            "I'm ready to help you with the repository. Please provide me with the necessary information",
            1,
            "asks_user",
        ),
        ("Could you please specify which file you want me to change?", 2, "asks_user"),
        ("Let me know what you would like me to do next.", 2, "asks_user"),
    ],
)
def test_non_answers_are_recognised(reply: str, tool_calls: int, kind: str) -> None:
    wrong = classify(reply, tool_calls=tool_calls, instructions=HARNESS)
    assert wrong is not None and wrong.kind == kind
    assert wrong.nudge in NUDGES


@pytest.mark.parametrize(
    "reply",
    [
        "add() in calc.py subtracted; it adds now and `python3 test_calc.py` prints 1 passed.",
        "config/db.py:12",
        "The retry count is set in client/retry.py on line 8 (MAX_RETRIES = 5).",
        "A small URL shortener: shortlinks/app.py stores links in SQLite and serves redirects. Tell me if you "
        "want more detail on the storage layer.",
        # a long answer of substance that ends by offering more is still an answer
        "logstats parses web server logs (logstats/parse.py) and prints per-status counts (logstats/report.py). " * 8
        + " Please let me know if you need anything else.",
    ],
)
def test_real_answers_pass(reply: str) -> None:
    assert classify(reply, tool_calls=2, instructions=HARNESS) is None


def test_an_answer_that_restates_the_prompts_file_list_echoes_it() -> None:
    prompt = "Summarize the project\n\nFiles:\n- README.md\n- app/main.py\n- app/models.py\n- tests/test_main.py\n"
    restated = "Files: README.md, app/main.py, app/models.py, tests/test_main.py"
    assert echoes(restated, [prompt])
    assert not echoes("app/main.py starts a Flask app; app/models.py holds two SQLAlchemy models.", [prompt])


@pytest.mark.parametrize(
    ("query", "change"),
    [
        ("Fix the failing test", True),
        ("Add a function slugify(text) to text.py", True),
        ("The pagination is off by one; make the test pass", True),
        ("Find where the retry count is set and fix it", True),
        ("Analyze the repository structure and create a summary", False),
        ("What does this project do?", False),
        ("Where is the database port configured? Give the file and line.", False),
        ("Compare the README files from multiple repositories", False),
        ("Summarize the module layout", False),
        ("On which port does this app connect to its database, and in which file is that port set?", False),
        ("In which file is the log level set?", False),
        ("Scale the checkout service to 4 replicas by editing deploy/app.yaml.", True),
        ("Disable the debug toolbar in settings.py", True),
        ("Bump the package version in pyproject.toml from 0.3.1 to 0.4.0.", True),
    ],
)
def test_which_queries_ask_for_a_change(query: str, change: bool) -> None:
    assert asks_for_change(query) is change


@pytest.mark.parametrize(
    ("query", "kind"),
    [
        ("The test script test_fizzbuzz.py fails. Find the bug in fizzbuzz.py and fix it", "fix"),
        ("Add a function clamp(value, low, high) to mathutils.py", "add"),
        ("Change timeout_s in config/app.json from 30 to 60", "config"),
        ("Which file defines retry_with_backoff?", "locate"),
        ("Which function raises the error with the message 'quota exceeded'?", "locate"),
        ("In which file, and on which line, is the grid output format defined?", "locate"),
        ("Analyze the repository structure and create a summary", "summarize"),
        ("What does this library do?", "summarize"),
        ("Compare the README files from multiple repositories", "other"),
    ],
)
def test_the_kind_of_a_task_is_read_from_its_words(query: str, kind: str) -> None:
    assert task_kind(query) == kind
