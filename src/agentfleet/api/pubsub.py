"""A Pub/Sub delivery (the `messagePublished` CloudEvent Eventarc sends the dispatch function) → a use case.

The message is a DispatchMessage (data, or attributes with empty data), which is dispatched, or a
TaskRequest a user published straight onto the topic, which is submitted like an HTTP one. A message
that cannot be understood is logged and acked: a redelivery cannot fix it. Only RetryableError
escapes, so that the platform redelivers.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from agentfleet import jsontext
from agentfleet.errors import ConflictError, InvalidRequestError, RetryableError, describe_validation_error
from agentfleet.ports import DispatchMessage
from agentfleet.service import Service

logger = logging.getLogger("agentfleet.dispatch")


class UnusableMessageError(ValueError):
    """The delivery is not a message the dispatcher understands; the reason says why."""


def decode(data: Any) -> tuple[str, Any, dict[str, str]]:
    """(message id, the decoded JSON payload or None when empty, attributes) of a push delivery."""
    if isinstance(data, bytes | str):
        try:
            data = jsontext.loads(data)
        except ValueError as exc:
            raise UnusableMessageError(f"the event data is refused: {exc}") from None
    message = data.get("message") if isinstance(data, Mapping) else None
    if not isinstance(message, Mapping):
        raise UnusableMessageError("the event data has no Pub/Sub 'message' object")
    message_id = str(message.get("messageId") or message.get("message_id") or "")
    attributes = message.get("attributes") or {}
    if not isinstance(attributes, Mapping):
        raise UnusableMessageError("the message attributes are not an object")
    try:
        raw = base64.b64decode(message.get("data") or "", validate=True)
        payload = jsontext.loads(raw) if raw.strip() else None
    except (binascii.Error, TypeError, ValueError) as exc:
        raise UnusableMessageError(f"the message data is not base64-encoded JSON: {exc}") from None
    return message_id, payload, {str(k): str(v) for k, v in attributes.items()}


def queued_s(data: Any, now: datetime | None = None) -> float | None:
    """Seconds since the delivery's message was published (its `publishTime`), if it says."""
    if isinstance(data, bytes | str):
        try:
            data = jsontext.loads(data)
        except ValueError:
            return None
    message = data.get("message") if isinstance(data, Mapping) else None
    published = message.get("publishTime") or message.get("publish_time") if isinstance(message, Mapping) else None
    if not isinstance(published, str):
        return None
    try:
        at = datetime.fromisoformat(published.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return round(max(0.0, ((now or datetime.now(UTC)) - at).total_seconds()), 3)


def handle_delivery(service: Service, data: Any) -> None:
    """Dispatch or submit what the delivery carries; log and ack what cannot be used."""
    try:
        message_id, payload, attributes = decode(data)
    except UnusableMessageError as exc:
        logger.error("dropped an unusable Pub/Sub delivery: %s", exc)
        return
    waited = queued_s(data)
    task_id = attributes.get("task_id") or (payload.get("task_id") if isinstance(payload, dict) else None)
    try:
        if isinstance(payload, dict) and "query" in payload:
            _submit(service, payload, message_id)
        else:
            _dispatch(service, payload if payload is not None else attributes, message_id, waited)
    except RetryableError as exc:
        logger.warning("dispatch of message %s will be retried: %s", message_id, exc, extra={"task_id": task_id})
        raise
    except (UnusableMessageError, InvalidRequestError, ConflictError) as exc:
        logger.error("dropped Pub/Sub message %s: %s", message_id, exc, extra={"task_id": task_id})


def _dispatch(service: Service, payload: Any, message_id: str, waited: float | None = None) -> None:
    try:
        message = DispatchMessage.model_validate(payload)
    except ValidationError as exc:
        raise UnusableMessageError(
            f"neither a dispatch message nor a task request (a task request needs 'query'): "
            f"{describe_validation_error(exc)}"
        ) from None
    began = time.monotonic()
    outcome = service.dispatch(message)
    took = round(time.monotonic() - began, 3)
    level = logging.WARNING if outcome.action in ("failed", "unknown") else logging.INFO
    logger.log(
        level,
        "dispatch %s attempt %s: %s %s",
        message.task_id,
        message.attempt,
        outcome.action,
        outcome.execution or outcome.detail,
        extra={"task_id": message.task_id, "queued_s": waited, "dispatch_s": took},
    )


def _submit(service: Service, body: dict[str, Any], message_id: str) -> None:
    """A TaskRequest published straight onto the topic. Redeliveries must not make a second task:
    without an idempotency key of its own, the message id is the key."""
    if not body.get("idempotency_key") and message_id:
        body = {**body, "idempotency_key": f"pubsub-{message_id}"}
    task, created = service.submit(body)
    what = "submitted" if created else "already submitted as"
    logger.info("Pub/Sub message %s %s task %s", message_id, what, task.id, extra={"task_id": task.id})
