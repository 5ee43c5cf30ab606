"""Telling a final answer from a non-answer, and a query that asks for a change from one that asks
a question. Small, explainable rules over the text and the turn (no model): a reply that is empty,
that asks the user for information the workspace holds, that repeats the harness's own
instructions, or that comes before the agent looked at anything is not the work being done.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

NonAnswerKind = Literal["empty", "asks_user", "echoes_instructions", "did_not_look"]

_ASKS = re.compile(
    r"\b("
    r"(please|could you|can you|would you)( kindly)? (provide|share|give|send|tell|specify|clarify|describe|paste)"
    r"|(i am|i'm) (ready|happy|here) to help"
    r"|how (can|may) i (help|assist)"
    r"|what would you like( me)? to"
    r"|let me know (what|which|how|if)"
    r"|i (need|would need|require) (more|additional|some) (information|details|context)"
    r"|(provide|share) (me )?(with )?(the|more|some) (necessary )?(information|details|code|context|files?)"
    r"|which (file|repository|function|part) (do|would|should) you"
    r")\b",
    re.IGNORECASE,
)
_WORDS = re.compile(r"[a-z0-9_]+")
ASKING_MAX_CHARS = 700
"""A longer reply that also asks something has usually said something of substance first."""
SHINGLE = 6
ECHO_SHARE = 0.5
"""A reply whose 6-word runs come from the harness's own messages at least this often echoes them."""

_CHANGE_VERBS = re.compile(
    r"\b(fix|add|implement|change|update|modify|edit|write|create|rename|remove|delete|refactor|replace|"
    r"make|set|bump|raise|lower|increase|decrease|convert|migrate|upgrade|patch|correct|repair|resolve|"
    r"support|introduce|extract|move|insert|append|generate|scale|enable|disable|turn)(s|es|ed|d|ing)?\b|"
    r"\b(making|writing)\b",
    re.IGNORECASE,
)
_QUESTION_START = re.compile(
    r"^\W*((in|on|at|from|for|to|with|by|under) (which|what)|what|which|where|why|how|who|when|is|are|does|do|"
    r"can|explain|describe|summari[sz]e|list|find|locate|show|tell|compare|analy[sz]e|review|count|identify)\b",
    re.IGNORECASE,
)
_THEN_CHANGE = re.compile(r"\b(and|then)\s+(fix|add|change|update|rename|remove|implement)\b", re.IGNORECASE)
"""A question that goes on to ask for a change ("find where X is set and fix it")."""


@dataclass(frozen=True)
class NonAnswer:
    kind: NonAnswerKind
    reason: str
    """For the task's record: what was wrong with the reply."""
    nudge: str
    """What the model is told, once, to get a real answer."""


NON_ANSWERS: dict[NonAnswerKind, NonAnswer] = {
    "empty": NonAnswer(
        "empty",
        "the reply was empty",
        "Your reply was empty. Do the task with the tools, then answer with what you did or found.",
    ),
    "did_not_look": NonAnswer(
        "did_not_look",
        "it answered without looking at the workspace",
        "You have not run any command yet. Look at the repository first (list and read the relevant files), "
        "then answer.",
    ),
    "echoes_instructions": NonAnswer(
        "echoes_instructions",
        "the reply repeated the harness's instructions",
        "Your reply repeated my instructions instead of answering. Answer the task itself: what you found or "
        "changed, naming the files.",
    ),
    "asks_user": NonAnswer(
        "asks_user",
        "the reply asked the user for information instead of answering",
        "Do not ask me for anything: everything you need is in the workspace. Use the tools to find it, do the "
        "task, then answer with what you found or changed.",
    ),
}
NUDGES = [wrong.nudge for wrong in NON_ANSWERS.values()]
"""The harness's own words: a reply that repeats them is no answer."""


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def _shingles(words: list[str]) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + SHINGLE]) for i in range(max(len(words) - SHINGLE + 1, 0))}


def echoes(reply: str, instructions: Iterable[str]) -> bool:
    """Whether most of `reply` is copied from `instructions` (runs of six words in common)."""
    words = _words(reply)
    if len(words) < SHINGLE:
        said = " ".join(words)
        return bool(said) and any(said == " ".join(_words(text)) for text in instructions)
    ours: set[tuple[str, ...]] = set()
    for text in instructions:
        ours |= _shingles(_words(text))
    theirs = [tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]
    return sum(s in ours for s in theirs) / len(theirs) >= ECHO_SHARE


def asks_user(reply: str) -> bool:
    """Whether the reply asks the user for what the agent should have found itself."""
    return len(reply) <= ASKING_MAX_CHARS and _ASKS.search(reply) is not None


def classify(reply: str, *, tool_calls: int, instructions: Iterable[str], looked: bool = False) -> NonAnswer | None:
    """The way `reply` fails to be a final answer, or None when it is one. `tool_calls`: how many the
    agent made so far; `instructions`: the harness's own messages (system prompt, nudges); `looked`:
    the prompt itself showed file contents, so an answer without a tool call may still rest on them."""
    text = reply.strip()
    if not text:
        return NON_ANSWERS["empty"]
    if tool_calls == 0 and not looked:
        return NON_ANSWERS["did_not_look"]
    if echoes(text, [*instructions, *NUDGES]):
        return NON_ANSWERS["echoes_instructions"]
    if asks_user(text):
        return NON_ANSWERS["asks_user"]
    return None


def asks_for_change(query: str) -> bool:
    """Whether `query` asks the agent to change files (fix, add, write…) rather than to answer."""
    first = query.strip().split("\n", 1)[0]
    if _QUESTION_START.match(first) and not _CHANGE_VERBS.match(first.strip()):
        return _THEN_CHANGE.search(first) is not None
    return _CHANGE_VERBS.search(first) is not None


TaskKind = Literal["fix", "add", "config", "locate", "summarize", "other"]
_KIND_RULES: list[tuple[TaskKind, re.Pattern[str]]] = [
    ("locate", re.compile(r"^\W*(where|which|(in|on|at) which)\b", re.IGNORECASE)),
    ("fix", re.compile(r"\b(fix|bug|fails?|failing|broken|wrong|error|crash(es)?)\b", re.IGNORECASE)),
    ("config", re.compile(r"\b(config(uration)?|setting|\.ini|\.ya?ml|\.toml|\.json|bump|version)\b", re.IGNORECASE)),
    (
        "summarize",
        re.compile(r"\b(summar\w*|overview|what does|describe|explain|analy[sz]e|structure)\b", re.IGNORECASE),
    ),
    ("add", re.compile(r"\b(add|implement|write|create)\b", re.IGNORECASE)),
    ("locate", re.compile(r"\b(where|which file|find|locate|what line|which line|defined)\b", re.IGNORECASE)),
]


def task_kind(query: str) -> TaskKind:
    """The sort of task `query` asks for, by its words: fix, add, config, locate, summarize or other."""
    for kind, rule in _KIND_RULES:
        if rule.search(query):
            return kind
    return "other"
