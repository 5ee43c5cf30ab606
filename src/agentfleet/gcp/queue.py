"""TaskQueue on a Pub/Sub topic. Eventarc (a push subscription, in the emulated flow) delivers
each message to the dispatch function as a `messagePublished` CloudEvent.

A message is a DispatchMessage: its JSON as the data, and task_id / attempt / workspace_id as
attributes (so a subscription filter or a person reading the topic sees them without decoding).
The ordering key is the workspace id: the tasks of one repository reach the dispatcher in the
order they were published. `publish` waits for the server's message id, so when it returns the
message is durable; a failure raises a GcpUnavailableError, a ConnectionError (after resuming the
ordering key, which the client pauses on an error), for the caller to report or retry: a missing
topic too, so that the task waits QUEUED for it.
"""

from __future__ import annotations

import logging
from typing import Any

from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[attr-defined]

from agentfleet.gcp.errors import PublishError, translate
from agentfleet.ports import DispatchMessage
from agentfleet.settings import Settings

logger = logging.getLogger("agentfleet.gcp.queue")

PUBLISH_TIMEOUT_S = 30.0


class PubSubTaskQueue:
    def __init__(self, publisher: pubsub_v1.PublisherClient, topic: str) -> None:
        """`topic`: the full path, projects/P/topics/T."""
        self.publisher = publisher
        self.topic = topic

    @classmethod
    def from_settings(cls, settings: Settings) -> PubSubTaskQueue:
        options = pubsub_v1.types.PublisherOptions(enable_message_ordering=True)
        # One message per dispatch, sent at once: latency matters more than batching here.
        batching = pubsub_v1.types.BatchSettings(max_messages=100, max_latency=0.001)
        publisher = pubsub_v1.PublisherClient(batch_settings=batching, publisher_options=options)
        return cls(publisher, publisher.topic_path(settings.require("project_id"), settings.pubsub_topic))

    def publish(self, message: DispatchMessage) -> str:
        return self.publish_raw(
            message.model_dump_json().encode(), message.attributes(), ordering_key=message.workspace_id
        )

    def publish_raw(self, data: bytes, attributes: dict[str, str], *, ordering_key: str = "") -> str:
        """Publish bytes as they are; the server's message id."""
        future = self.publisher.publish(self.topic, data, ordering_key=ordering_key, **attributes)
        try:
            return str(future.result(timeout=PUBLISH_TIMEOUT_S))
        except (gexc.GoogleAPIError, TimeoutError, OSError) as exc:
            if ordering_key:
                self.publisher.resume_publish(self.topic, ordering_key)
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
