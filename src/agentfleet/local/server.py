"""`agentfleet serve`: the orchestrate API, a dispatcher feeding the local queue's messages to
dispatch as the same Pub/Sub CloudEvents Eventarc delivers, and the reaper on a timer — one
process tree. Agents run in their own sessions: stopping the server leaves them running, and
a restarted server picks up where it was (leases expire, heartbeats tell who is alive).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import threading
from collections.abc import Callable
from typing import Any

from cloudevents.http import CloudEvent
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request

from agentfleet.api import Api
from agentfleet.errors import ConfigError
from agentfleet.local.queue import Delivery, SqliteTaskQueue
from agentfleet.pubsub import handle_delivery
from agentfleet.service import RetryableError, Service

logger = logging.getLogger("agentfleet.serve")
MESSAGE_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"
LEASE_S = 60.0
RETRY_DELAY_S = 2.0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def as_cloud_event(delivery: Delivery) -> CloudEvent:
    """The Pub/Sub `messagePublished` CloudEvent Eventarc would deliver for this message."""
    attributes = {
        "type": MESSAGE_PUBLISHED,
        "source": "//pubsub.googleapis.com/projects/local/topics/tasks",
        "id": delivery.message_id,
    }
    data = {
        "message": {
            "data": base64.b64encode(delivery.data).decode(),
            "attributes": delivery.attributes,
            "messageId": delivery.message_id,
            "publishTime": delivery.published_at.isoformat(),
        },
        "subscription": "projects/local/subscriptions/dispatch",
        "deliveryAttempt": delivery.delivery_attempt,
    }
    return CloudEvent(attributes, data)


class Loop(threading.Thread):
    """Calls `step` every `interval_s` until stopped; a failing step is logged, not fatal."""

    def __init__(self, name: str, step: Callable[[], Any], interval_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.step, self.interval_s = step, interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                busy = self.step()
            except Exception:  # top-level handler of a background loop
                logger.exception("%s failed; trying again", self.name)
                busy = False
            if not busy:
                self.stopped.wait(self.interval_s)


class Dispatcher:
    """Pulls from the local queue and hands each message to dispatch as a CloudEvent."""

    def __init__(self, service: Service, queue: SqliteTaskQueue) -> None:
        self.service, self.queue = service, queue

    def step(self) -> bool:
        deliveries = self.queue.pull(max_messages=10, lease_s=LEASE_S)
        for delivery in deliveries:
            try:
                handle_delivery(self.service, as_cloud_event(delivery).get_data())
            except RetryableError as exc:
                logger.warning("dispatch will be retried: %s", exc)
                self.queue.nack(delivery.message_id, delay_s=RETRY_DELAY_S)
                continue
            self.queue.ack(delivery.message_id)
        return bool(deliveries)


class LocalServer:
    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 8080) -> None:
        settings = service.settings
        if not is_loopback(host) and not (settings.api_token and settings.api_token.get_secret_value()):
            raise ConfigError(
                f"binding {host} exposes the API beyond this machine; set AGENTFLEET_API_TOKEN to a secret "
                "token (clients send it as a bearer token), or bind 127.0.0.1"
            )
        queue = service.backends.queue
        if not isinstance(queue, SqliteTaskQueue):
            raise ConfigError("agentfleet serve runs the local backends; set AGENTFLEET_BACKEND=local")
        api = Api(service)
        self.http: BaseWSGIServer = make_server(host, port, Request.application(api), threaded=True)
        self.loops = [
            Loop("dispatcher", Dispatcher(service, queue).step, 0.2),
            Loop("reaper", service.reap, settings.reap_interval_s),
        ]

    @property
    def url(self) -> str:
        return f"http://{self.http.host}:{self.http.port}"

    def serve_forever(self) -> None:
        for loop in self.loops:
            loop.start()
        try:
            self.http.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        for loop in self.loops:
            loop.stopped.set()
        self.http.server_close()
