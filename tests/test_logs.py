"""Structured logs: JSON lines Cloud Logging reads, with the task id, and no secrets."""

from __future__ import annotations

import json
import logging

from agentfleet.logs import JsonFormatter


def record(message: str, level: int = logging.INFO, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("agentfleet.test", level, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_a_log_line_is_json_with_severity_message_and_task_id() -> None:
    line = json.loads(JsonFormatter().format(record("dispatched", logging.WARNING, task_id="abc123")))
    assert line["severity"] == "WARNING" and line["message"] == "dispatched" and line["task_id"] == "abc123"


def test_secrets_never_reach_a_log_line() -> None:
    text = "cloning https://user:ghp_secret123@github.com/a/b with Bearer tok-987 and key sk-abcdefghijkl"
    line = JsonFormatter().format(record(text))
    for secret in ("ghp_secret123", "tok-987", "sk-abcdefghijkl"):
        assert secret not in line
    assert "https://***@github.com/a/b" in line
