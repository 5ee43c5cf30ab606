"""TaskQueue on a Pub/Sub topic. Eventarc (a push subscription, in the emulated flow) delivers
each message to the dispatch function as a `messagePublished` CloudEvent.

A message is a DispatchMessage: its JSON as the data, and task_id / attempt / workspace_id as
attributes (so a subscription filter or a person reading the topic sees them without decoding).
The ordering key is the workspace id: the tasks of one repository reach the dispatcher in the
order they were published. `publish` waits for the server's message id, so when it returns the
message is durable; a failure raises a GcpUnavailableError, a ConnectionError, for the caller to
report or retry: a missing topic too, so that the task waits QUEUED for it.

A publish is one Publish RPC, made in the caller's thread through the official client's GAPIC
surface (`PublisherClient.api`), not its batching publisher: every caller waits for its own
message id, so there is nothing to batch, and the batcher's timer and commit threads and its
max_latency wait cost ~5 ms of a ~7 ms publish on the emulator (1.7-2.1 ms CPU against 0.4-0.5).
Order holds as before: a publish returns once the server has the message, so whatever is
published after it is received after it.
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.api_core.retry import Retry, if_exception_type
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from agentfleet.gcp.errors import PublishError, translate
from agentfleet.ports import DispatchMessage
from agentfleet.settings import Settings

logger = logging.getLogger("agentfleet.gcp.queue")

PUBLISH_TIMEOUT_S = 30.0
PUBLISH_RETRY = Retry(
    if_exception_type(gexc.ServiceUnavailable, gexc.ResourceExhausted, gexc.InternalServerError, gexc.Aborted),
    timeout=PUBLISH_TIMEOUT_S,
)
"""Transient failures are tried again (a retried publish may deliver twice: dispatch is exactly
once per attempt whatever the deliveries)."""


class PubSubTaskQueue:
    def __init__(self, publisher: pubsub_v1.PublisherClient, topic: str) -> None:
        """`topic`: the full path, projects/P/topics/T."""
        self.publisher = publisher
        self.topic = topic

    @classmethod
    def from_settings(cls, settings: Settings) -> PubSubTaskQueue:
        publisher = pubsub_v1.PublisherClient()
        return cls(publisher, publisher.topic_path(settings.require("project_id"), settings.pubsub_topic))

    def publish(self, message: DispatchMessage) -> str:
        return self.publish_raw(
            message.model_dump_json().encode(), message.attributes(), ordering_key=message.workspace_id
        )

    def publish_raw(self, data: bytes, attributes: dict[str, str], *, ordering_key: str = "") -> str:
        """Publish bytes as they are; the server's message id."""
        message = pubsub_v1.types.PubsubMessage(data=data, attributes=attributes, ordering_key=ordering_key)
        try:
            response = self.publisher.api.publish(
                topic=self.topic, messages=[message], retry=PUBLISH_RETRY, timeout=PUBLISH_TIMEOUT_S
            )
            return str(response.message_ids[0])
        except (gexc.GoogleAPIError, TimeoutError, OSError) as exc:
            if isinstance(exc, gexc.NotFound):  # kept retryable: the task stays QUEUED until the topic is there
                raise PublishError(f"the Pub/Sub topic {self.topic} does not exist (AGENTFLEET_PUBSUB_TOPIC)") from exc
            raise translate(exc, f"publishing to {self.topic}") from exc

    def health(self) -> dict[str, Any]:
        report: dict[str, Any] = {"backend": "pubsub", "topic": self.topic, "ok": False}
        try:
            self.publisher.get_topic(request={"topic": self.topic}, timeout=10)
        except (gexc.GoogleAPIError, OSError) as exc:
            report["error"] = f"{type(exc).__name__}: {exc}"
            return report
        report["ok"] = True
        return report
