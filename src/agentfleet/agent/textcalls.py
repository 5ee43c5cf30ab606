"""Recovering tool calls that a model wrote as text instead of native `tool_calls`.

Forms seen from open models: a JSON object in a ```json fence, Hermes/Qwen `<tool_call>` tags,
gpt-oss harmony text leaking through a server (`to=functions.NAME ... <|message|>{...}`), a bare
JSON object as the whole reply, and (for the text-action protocol) one ```bash fence, or a reply
that is one bare command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TAGGED = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_FENCE = re.compile(r"```[ \t]*(?P<lang>[A-Za-z0-9_+-]*)[^\n]*\n(?P<body>.*?)(?:```|$)", re.DOTALL)
_HARMONY = re.compile(
    r"to=(?:functions\.)?(?P<name>[A-Za-z0-9_.-]+)[^\n]*?<\|message\|>(?P<body>.*?)(?:<\|call\|>|<\|end\|>|$)",
    re.DOTALL,
)
_SHELL_LANGS = {"bash", "sh", "shell", "console", "zsh"}
_BARE_COMMAND = re.compile(r"\$?[ \t]*(cat|grep|ls|sed|head|tail|find|python3?|pytest|git|wc|tree|awk)([ \t]+[^\n]*)?")
"""A reply that is nothing but one command line, unfenced: small models copy the example they were
shown without its fence. A sentence (a word and a full stop at the end, a colon-space, "the") is not one."""


@dataclass(frozen=True)
class TextCall:
    name: str
    arguments: dict[str, Any]


@dataclass
class Recovery:
    """What was found in a reply: calls, or an attempt that could not be parsed."""

    calls: list[TextCall] = field(default_factory=list)
    error: str | None = None


def _as_call(obj: Any, known: set[str]) -> TextCall | None:
    """Accept the shapes models use: {name, arguments}, {tool, args}, {function: {...}}."""
    if not isinstance(obj, dict):
        return None
    if isinstance(obj.get("function"), dict):
        obj = obj["function"]
    name = obj.get("name") or obj.get("tool") or obj.get("tool_name")
    args = obj.get("arguments", obj.get("args", obj.get("parameters", obj.get("input", {}))))
    if isinstance(args, str):
        try:
            args = json.loads(args) if args.strip() else {}
        except json.JSONDecodeError:
            return None
    if not isinstance(name, str) or not isinstance(args, dict):
        return None
    if known and name not in known:
        return None
    return TextCall(name, args)


def _parse_json(body: str) -> Any:
    body = body.strip()
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        # Models sometimes add a trailing sentence; take the first complete JSON value.
        try:
            value, _ = json.JSONDecoder().raw_decode(body)
            return value
        except json.JSONDecodeError:
            return None


def _calls_from(value: Any, known: set[str]) -> list[TextCall]:
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, known) for item in items]
    return [c for c in calls if c is not None]


def recover_tool_calls(content: str | None, known_tools: set[str], *, shell_tool: str | None = None) -> Recovery:
    """Tool calls written in `content`. `shell_tool` enables the ```bash fence form."""
    if not content:
        return Recovery()
    for finder in (_from_tags, _from_harmony, _from_json_fences, _from_bare_json):
        recovery = finder(content, known_tools)
        if recovery.calls or recovery.error:
            return recovery
    if shell_tool:
        return _from_shell_fence(content, shell_tool)
    return Recovery()


def _from_tags(content: str, known: set[str]) -> Recovery:
    bodies = _TAGGED.findall(content)
    if not bodies:
        return Recovery()
    calls = [c for body in bodies for c in _calls_from(_parse_json(body), known)]
    if calls:
        return Recovery(calls)
    return Recovery(error="a <tool_call> block was not a JSON object with a known tool name and arguments")


def _from_harmony(content: str, known: set[str]) -> Recovery:
    calls = []
    for match in _HARMONY.finditer(content):
        args = _parse_json(match["body"])
        name = match["name"]
        if isinstance(args, dict) and (not known or name in known):
            calls.append(TextCall(name, args))
        else:
            return Recovery(error=f"the call to {name!r} did not carry a JSON object of arguments")
    return Recovery(calls)


def _from_json_fences(content: str, known: set[str]) -> Recovery:
    attempted = False
    calls: list[TextCall] = []
    for match in _FENCE.finditer(content):
        if match["lang"].lower() not in ("json", "tool_call", "tool", ""):
            continue
        body = match["body"]
        if not re.search(r'"(name|tool|function)"\s*:', body):
            continue
        attempted = True
        calls.extend(_calls_from(_parse_json(body), known))
    if attempted and not calls:
        return Recovery(error="a JSON tool call could not be parsed or named an unknown tool")
    return Recovery(calls)


def _from_bare_json(content: str, known: set[str]) -> Recovery:
    text = content.strip()
    if not (text.startswith("{") or text.startswith("[")):
        return Recovery()
    value = _parse_json(text)
    calls = _calls_from(value, known)
    if calls:
        return Recovery(calls)
    if value is None and re.search(r'"(name|tool)"\s*:', text):
        return Recovery(error="the reply looks like a JSON tool call but is not valid JSON")
    return Recovery()


def _from_shell_fence(content: str, shell_tool: str) -> Recovery:
    for match in _FENCE.finditer(content):
        if match["lang"].lower() in _SHELL_LANGS:
            command = match["body"].strip()
            if command:
                return Recovery([TextCall(shell_tool, {"command": command})])
    line = content.strip().strip("`").strip()
    bare = _BARE_COMMAND.fullmatch(line)
    sentence = re.search(r"\w[.!?]$", line) or ": " in line or re.search(r"\b(the|is|was)\b", line)
    if bare and not sentence:
        return Recovery([TextCall(shell_tool, {"command": line.removeprefix("$").strip()})])
    return Recovery()
