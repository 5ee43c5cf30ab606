"""The Pub/Sub TaskQueue against the official Pub/Sub emulator, with the official client."""

from __future__ import annotations

import pytest
from google.cloud import pubsub_v1

from agentfleet.gcp.queue import PublishError, PubSubTaskQueue
from agentfleet.ports import DispatchMessage
from agentfleet.settings import Settings


@pytest.fixture
def queue_and_subscription(gcp_settings: Settings) -> tuple[PubSubTaskQueue, str]:
    queue = PubSubTaskQueue.from_settings(gcp_settings)
    queue.publisher.create_topic(name=queue.topic)
    subscriber = pubsub_v1.SubscriberClient()
    subscription = subscriber.subscription_path(gcp_settings.require("project_id"), f"pull-{gcp_settings.pubsub_topic}")
    subscriber.create_subscription(
        request={"name": subscription, "topic": queue.topic, "enable_message_ordering": True}
    )
    return queue, subscription


def pull_all(subscription: str, want: int) -> list[pubsub_v1.types.ReceivedMessage]:
    subscriber = pubsub_v1.SubscriberClient()
    received: list[pubsub_v1.types.ReceivedMessage] = []
    for _ in range(50):
        response = subscriber.pull(subscription=subscription, max_messages=100, timeout=10)
        received += response.received_messages
        if response.received_messages:
            subscriber.acknowledge(subscription=subscription, ack_ids=[m.ack_id for m in response.received_messages])
        if len(received) >= want:
            break
    return received


def test_a_published_message_carries_the_typed_data_attributes_and_the_workspace_as_ordering_key(
    queue_and_subscription: tuple[PubSubTaskQueue, str],
) -> None:
    queue, subscription = queue_and_subscription
    message = DispatchMessage(task_id="t-1", attempt=2, workspace_id="widgets-abc123")
    message_id = queue.publish(message)
    [received] = pull_all(subscription, 1)
    assert received.message.message_id == message_id
    assert DispatchMessage.model_validate_json(received.message.data) == message
    assert dict(received.message.attributes) == {"task_id": "t-1", "attempt": "2", "workspace_id": "widgets-abc123"}
    assert received.message.ordering_key == "widgets-abc123"


def test_messages_of_one_workspace_arrive_in_publish_order(queue_and_subscription: tuple[PubSubTaskQueue, str]) -> None:
    queue, subscription = queue_and_subscription
    for i in range(10):
        queue.publish(DispatchMessage(task_id=f"t-{i}", attempt=1, workspace_id="one-workspace"))
    received = pull_all(subscription, 10)
    assert [m.message.attributes["task_id"] for m in received] == [f"t-{i}" for i in range(10)]


def test_publishing_to_a_missing_topic_is_a_connection_error_that_names_the_setting(gcp_settings: Settings) -> None:
    queue = PubSubTaskQueue.from_settings(gcp_settings)  # the topic was never created
    with pytest.raises(PublishError, match="AGENTFLEET_PUBSUB_TOPIC") as caught:
        queue.publish(DispatchMessage(task_id="t", attempt=1, workspace_id="w"))
    assert isinstance(caught.value, ConnectionError)
    assert queue.health()["ok"] is False
    queue.publisher.create_topic(name=queue.topic)  # nothing was left paused: publishing works again
    assert queue.publish(DispatchMessage(task_id="t", attempt=1, workspace_id="w"))
    assert queue.health()["ok"] is True
