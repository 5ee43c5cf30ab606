"""`agentfleet serve`: the orchestrate API (with the A2A endpoint beside it, api/a2a.py), a
dispatcher feeding the local queue's messages to dispatch as the same Pub/Sub CloudEvents Eventarc
delivers, and the reaper on a timer — one process tree. Agents run in their own sessions:
stopping the server leaves them running, and a restarted server picks up where it was (leases
expire, heartbeats tell who is alive).
"""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Callable
from typing import Any

import waitress
from waitress import wasyncore

from agentfleet.api import Api
from agentfleet.api.a2a import mount
from agentfleet.api.pubsub import handle_delivery
from agentfleet.errors import ConfigError, RetryableError
from agentfleet.local import token
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.queue import Delivery, SqliteTaskQueue
from agentfleet.net import is_loopback
from agentfleet.service import Service

logger = logging.getLogger("agentfleet.serve")
LEASE_S = 60.0
RETRY_DELAY_S = 2.0
PAGE = 10
"""Messages the dispatcher pulls at a time."""
DISPATCH_POLL_S = 0.2
"""How often the dispatcher looks for messages it was not woken for (it wakes for a publish in
this process and for the end of an agent it started, which has handed its workspace on): those
another process published, a user publishing onto the queue or an agent still running."""
HTTP_LIMITS: dict[str, Any] = {
    "threads": 32,  # each open event stream holds one
    "connection_limit": 1000,  # connections at once; more wait in the listen backlog
    "backlog": 2048,
    "channel_timeout": 120,  # an idle connection is closed (event streams send keep-alives)
    "max_request_body_size": 4 * 1024 * 1024,  # the API itself refuses more than MAX_BODY_BYTES
    "clear_untrusted_proxy_headers": True,
}
"""The HTTP server: waitress (a production WSGI server) with bounded threads and connections and
timeouts, rather than a thread per connection with none."""


def loopback_hosts(port: int) -> frozenset[str]:
    return frozenset(f"{name}:{port}" for name in ("127.0.0.1", "localhost", "[::1]"))


def event_data(delivery: Delivery) -> dict[str, Any]:
    """The data of the Pub/Sub `messagePublished` CloudEvent Eventarc would deliver for this
    message: what the dispatch function reads (handle_delivery)."""
    return {
        "message": {
            "data": base64.b64encode(delivery.data).decode(),
            "attributes": delivery.attributes,
            "messageId": delivery.message_id,
            "publishTime": delivery.published_at.isoformat(),
        },
        "subscription": "projects/local/subscriptions/dispatch",
        "deliveryAttempt": delivery.delivery_attempt,
    }


class Loop(threading.Thread):
    """Calls `step` every `interval_s` until stopped; a failing step is logged, not fatal.

    `step` returns True when it found work and more may be waiting (a full page of queue
    messages): the loop then runs it again at once. Anything else, a report object included,
    means "idle": the loop sleeps the interval. (Truthiness is not enough: a dataclass report is
    always truthy, and a loop that never sleeps burns a core.)"""

    def __init__(self, name: str, step: Callable[[], Any], interval_s: float) -> None:
        super().__init__(name=name, daemon=True)
        self.step, self.interval_s = step, interval_s
        self.stopped = threading.Event()
        self._woken = threading.Event()
        self.steps = 0

    def wake(self) -> None:
        """Run the step now instead of at the end of the interval (safe from any thread; a wake
        during a step runs it once more right after)."""
        self._woken.set()

    def stop(self) -> None:
        self.stopped.set()
        self._woken.set()

    def run(self) -> None:
        while not self.stopped.is_set():
            self.steps += 1
            self._woken.clear()
            try:
                busy = self.step() is True
            except Exception:  # top-level handler of a background loop
                logger.exception("%s failed; trying again", self.name)
                busy = False
            if not busy:
                self._woken.wait(self.interval_s)


class Dispatcher:
    """Pulls from the local queue and hands each message to dispatch as a CloudEvent."""

    def __init__(self, service: Service, queue: SqliteTaskQueue) -> None:
        self.service, self.queue = service, queue

    def step(self) -> bool:
        """Hand over up to a page of messages; True when the page was full (more may wait).

        The page's handled messages are acked together, in one write, at its end (or when a
        handler fails unexpectedly): with every task of a busy workspace published, most deliveries
        are a look and an ack. A crash before the ack redelivers them after the lease, and a
        redelivery is a no-op (dispatch claims each attempt once)."""
        deliveries = self.queue.pull(max_messages=PAGE, lease_s=LEASE_S)
        done: list[str] = []
        try:
            for delivery in deliveries:
                try:
                    handle_delivery(self.service, event_data(delivery))
                except RetryableError as exc:
                    logger.warning("dispatch will be retried: %s", exc)
                    self.queue.nack(delivery.message_id, delay_s=RETRY_DELAY_S)
                    continue
                done.append(delivery.message_id)
        finally:
            self.queue.ack(*done)
        return len(deliveries) == PAGE


def _reap(service: Service) -> None:
    report = service.reap()
    if report.requeued or report.failed:
        logger.info("reaped: requeued %s, failed %s", report.requeued, report.failed)


class LocalServer:
    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 8080) -> None:
        settings = service.settings
        loopback = is_loopback(host)
        if not loopback and settings.api_token is None:
            raise ConfigError(
                f"binding {host} exposes the API beyond this machine; set AGENTFLEET_API_TOKEN to a secret "
                "token (clients send it as a bearer token), or bind 127.0.0.1"
            )
        queue = service.backends.queue
        if not isinstance(queue, SqliteTaskQueue):
            raise ConfigError("agentfleet serve runs the local backends; set AGENTFLEET_BACKEND=local")
        # Always a token: a sandboxed command let onto the network reaches this loopback too.
        self.token_file = None if settings.api_token else settings.home / token.FILE
        secret = settings.api_token.get_secret_value() if settings.api_token else token.local_token(settings.home)
        app = Api(service, token=secret)
        self.http = waitress.create_server(mount(app), host=host, port=port, ident="agentfleet", **HTTP_LIMITS)
        if loopback:  # only this machine's names: no DNS rebinding, no cross-site form posts
            app.hosts = loopback_hosts(self.http.effective_port)
        self._serving = False
        self.jobs = service.backends.jobs
        dispatcher = Loop("dispatcher", Dispatcher(service, queue).step, DISPATCH_POLL_S)
        queue.listeners.append(dispatcher.wake)  # a task submitted here is dispatched at once
        if isinstance(self.jobs, LocalJobRunner):  # an agent that ended has handed its workspace on
            self.jobs.exit_listeners.append(dispatcher.wake)
        self.loops = [dispatcher, Loop("reaper", lambda: _reap(service), settings.reap_interval_s)]

    @property
    def url(self) -> str:
        host = self.http.effective_host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.http.effective_port}"

    def serve_forever(self) -> None:
        for loop in self.loops:
            loop.start()
        self._serving = True
        try:
            self.http.run()  # returns when stop() closed the sockets (or on Ctrl-C)
        finally:
            self._serving = False
            self.stop()

    def stop(self) -> None:
        """Stop the loops and the HTTP server; safe from any thread, and more than once."""
        for loop in self.loops:
            loop.stop()
        close_jobs = getattr(self.jobs, "close", None)  # the warm launcher (the agents run on)
        if close_jobs is not None:
            close_jobs()
        self.http.task_dispatcher.shutdown(cancel_pending=True, timeout=1)
        http_map = self.http._map
        if not self._serving:
            wasyncore.close_all(http_map)
        elif http_map:  # close every socket from the serving thread: its run() then returns
            self.http.trigger.pull_trigger(lambda: wasyncore.close_all(http_map))
