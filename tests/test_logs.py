"""Structured logs: JSON lines Cloud Logging reads, with the task id, and no secrets."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from agentfleet.api.pubsub import queued_s
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


def test_the_dispatch_line_carries_the_seconds_from_publish_to_dispatch() -> None:
    now = datetime(2026, 11, 24, 10, 0, 2, 500000, tzinfo=UTC)
    delivery = {"message": {"data": "", "messageId": "1", "publishTime": "2026-11-24T10:00:00.000Z"}}
    assert queued_s(delivery, now) == 2.5
    assert queued_s(json.dumps(delivery).encode(), now) == 2.5
    assert queued_s({"message": {"data": ""}}, now) is None
    assert queued_s({"message": {"publishTime": "not a time"}}, now) is None

    line = json.loads(JsonFormatter().format(record("dispatch t attempt 1: launched e", task_id="t", queued_s=2.5)))
    assert line["queued_s"] == 2.5  # a field of its own: the log-based metric extracts it
    assert "queued_s" not in json.loads(JsonFormatter().format(record("other", queued_s=None)))
