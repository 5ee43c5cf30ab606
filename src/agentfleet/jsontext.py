"""JSON text from outside (HTTP bodies, Pub/Sub data), parsed with bounds: a body nested too deep
or a number too long is a ValueError that says so, never a RecursionError or a crash."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32
"""Deepest nesting accepted; a task request needs 4."""


class JsonTextError(ValueError):
    """The text is not JSON within bounds; the message says what is wrong."""


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value of `raw`: JsonTextError when it is not JSON, nests deeper than `max_depth` or
    holds a number too long to convert."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonTextError(f"it nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise JsonTextError(f"it is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise JsonTextError(f"it holds a value that cannot be read: {str(exc)[:200]}") from None
    if _depth(value) > max_depth:
        raise JsonTextError(f"it nests deeper than {max_depth} levels")
    return value


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest
