"""The whole cloud flow on one machine, for tests and benchmarks.

    client ─HTTP─► orchestrate (functions-framework) ─► Firestore emulator + Pub/Sub emulator
    Pub/Sub push subscription ─HTTP─► dispatch (functions-framework: a real messagePublished CloudEvent)
    dispatch ─gRPC, the real google-cloud-run client─► FakeCloudRun ─► the agent process
    agent ─► Firestore (task, events, heartbeats) + Cloud Storage (patch, log, workspace snapshot)

Both functions run as their own functions-framework servers on loopback, from `functions/main.py`
of this source tree, with the environment a deployment would give them. Every agent execution
gets an empty AGENTFLEET_HOME of its own, like a fresh container: whatever it reuses from an
earlier task of its workspace comes back through the snapshot in Cloud Storage.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1, storage  # type: ignore[attr-defined]
from google.protobuf import duration_pb2

from agentfleet.settings import Settings
from agentfleet.testing.emulators import CloudEmulators, EmulatorUnavailableError, free_port
from agentfleet.testing.fake_cloud_run import FakeCloudRun

FUNCTIONS_SOURCE = Path(__file__).resolve().parents[3] / "functions" / "main.py"
MAX_DELIVERY_ATTEMPTS = 5  # Pub/Sub's minimum
AGENT_IMAGE = "agentfleet-agent:emulated"
CONTAINER = 'export AGENTFLEET_HOME="$AGENTFLEET_CONTAINERS/$CLOUD_RUN_EXECUTION-$CLOUD_RUN_TASK_INDEX"; exec "$@"'


class CloudFlow:
    """Topics, subscriptions, the Cloud Run fake and the two functions, wired like a deployment."""

    def __init__(
        self,
        emulators: CloudEmulators,
        workdir: Path,
        *,
        llm_url: str,
        extra_env: dict[str, str] | None = None,
        ack_deadline_s: int = 60,
        agent_nice: int = 0,
        push_concurrency: int | None = None,
    ) -> None:
        """`agent_nice`: the agents' niceness. Deployed, an agent has a container of its own and takes
        no CPU from the functions; on one machine, a positive value gives them what is left over.

        `push_concurrency`: None, the emulator's push subscription, which delivers at most two
        messages at a time (a burst of N tasks waits N/2 dispatches); a number, a pull subscription
        with the same policies whose messages this process posts to the dispatch function as the
        push would, that many at a time, acking on a 2xx (Eventarc and Pub/Sub push scale out)."""
        self.emulators = emulators
        self.workdir = workdir
        unique = uuid.uuid4().hex[:8]
        self.env = {
            **emulators.env(),
            "AGENTFLEET_BACKEND": "gcp",
            "GCS_BUCKET": f"agentfleet-flow-{unique}",
            "AGENTFLEET_TASKS_COLLECTION": f"tasks-{unique}",
            "AGENTFLEET_PUBSUB_TOPIC": f"tasks-{unique}",
            "AGENTFLEET_JOB_IMAGE": AGENT_IMAGE,
            "AGENTFLEET_ALLOW_LOCAL_REPOS": "true",
            "GPT_OSS_URL": llm_url,
            "AGENTFLEET_HOME": str(workdir / "functions-home"),
            **(extra_env or {}),
        }
        self.ack_deadline_s = ack_deadline_s
        self.agent_nice = agent_nice
        self.push_concurrency = push_concurrency
        self._forwarder: Any = None
        self.publisher = pubsub_v1.PublisherClient()
        self.subscriber = pubsub_v1.SubscriberClient()
        project = emulators.project
        self.topic = self.publisher.topic_path(project, self.env["AGENTFLEET_PUBSUB_TOPIC"])
        self.dead_letter_topic = f"{self.topic}-dead"
        self.push_subscription = self.subscriber.subscription_path(project, f"dispatch-{unique}")
        self.dead_letter_subscription = self.subscriber.subscription_path(project, f"dead-{unique}")
        self.fake: FakeCloudRun | None = None
        self.functions: dict[str, subprocess.Popen[bytes]] = {}
        self.urls: dict[str, str] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> CloudFlow:
        if not FUNCTIONS_SOURCE.exists():
            raise EmulatorUnavailableError(
                f"the cloud flow runs functions/main.py from a source tree: {FUNCTIONS_SOURCE}"
            )
        try:
            storage.Client(project=self.emulators.project).create_bucket(self.env["GCS_BUCKET"])
            self.publisher.create_topic(name=self.topic)
            self.publisher.create_topic(name=self.dead_letter_topic)
            self.subscriber.create_subscription(name=self.dead_letter_subscription, topic=self.dead_letter_topic)
            self._start_fake()
            self.urls["orchestrate"] = self._start_function("orchestrate", "http")
            self.urls["dispatch"] = self._start_function("dispatch", "cloudevent")
            self.urls["reap"] = self._start_function("reap", "http")
            self._create_push_subscription()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_fake(self) -> None:
        containers = self.workdir / "containers"
        containers.mkdir(parents=True, exist_ok=True)
        agent_env = {**os.environ, **self.emulators.env(), "AGENTFLEET_CONTAINERS": str(containers)}
        # What the job template does not carry but this machine's "Cloud Run" must give its containers.
        agent_env["AGENTFLEET_ALLOW_LOCAL_REPOS"] = "true"
        self.fake = FakeCloudRun(
            command=[
                *(["nice", "-n", str(self.agent_nice)] if self.agent_nice else []),
                *["sh", "-c", CONTAINER, "container", sys.executable, "-m", "agentfleet.agent"],
            ],
            base_env=agent_env,
            log_dir=self.workdir / "executions",
        ).start()
        self.env["AGENTFLEET_CLOUD_RUN_ENDPOINT"] = self.fake.address

    def _start_function(self, target: str, signature: str) -> str:
        port = free_port()
        log = (self.workdir / f"{target}.log").open("ab")
        argv = [sys.executable, "-m", "functions_framework", "--target", target, "--source", str(FUNCTIONS_SOURCE)]
        argv += ["--signature-type", signature, "--host", "127.0.0.1", "--port", str(port)]
        env = {**os.environ, **self.env}
        if target == "dispatch" and self.push_concurrency:  # room for every delivery at once, as deployed
            env["THREADS"] = str(max(self.push_concurrency, int(env.get("THREADS", "0") or 0)))
        proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.functions[target] = proc
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, proc, f"the {target} function (log: {self.workdir / f'{target}.log'})")
        return url

    def _create_push_subscription(self) -> None:
        pushed = self.push_concurrency is None
        self.subscriber.create_subscription(
            request={
                "name": self.push_subscription,
                "topic": self.topic,
                **({"push_config": {"push_endpoint": self.urls["dispatch"] + "/"}} if pushed else {}),
                "ack_deadline_seconds": self.ack_deadline_s,
                # Not ordered, as deployed: an ordered push subscription holds a whole workspace
                # behind a message that keeps failing until it is dead-lettered, and the order of
                # a workspace's tasks is kept by the store (the oldest QUEUED one is published next).
                # (The emulator also crashes dead-lettering from an ordered push subscription.)
                "enable_message_ordering": False,
                "dead_letter_policy": {
                    "dead_letter_topic": self.dead_letter_topic,
                    "max_delivery_attempts": MAX_DELIVERY_ATTEMPTS,
                },
                "retry_policy": {
                    "minimum_backoff": duration_pb2.Duration(seconds=1),
                    "maximum_backoff": duration_pb2.Duration(seconds=2),
                },
            }
        )
        if not pushed:
            self._forwarder = self._forward(int(self.push_concurrency or 1))

    def _forward(self, concurrency: int) -> Any:
        """Pull the subscription and post each message to the dispatch function in the push body."""
        client = httpx.Client(timeout=self.ack_deadline_s)
        url = self.urls["dispatch"] + "/"

        def deliver(message: Any) -> None:
            body = {
                "message": {
                    "data": base64.b64encode(message.data).decode(),
                    "attributes": dict(message.attributes),
                    "messageId": message.message_id,
                    "publishTime": message.publish_time.isoformat().replace("+00:00", "Z"),
                },
                "subscription": self.push_subscription,
            }
            try:
                ok = client.post(url, json=body).is_success
            except httpx.HTTPError:
                ok = False
            message.ack() if ok else message.nack()

        scheduler = pubsub_v1.subscriber.scheduler.ThreadScheduler(ThreadPoolExecutor(concurrency))
        flow = pubsub_v1.types.FlowControl(max_messages=concurrency)
        return self.subscriber.subscribe(self.push_subscription, deliver, flow_control=flow, scheduler=scheduler)

    def stop(self) -> None:
        if self._forwarder is not None:
            self._forwarder.cancel()
            with contextlib.suppress(Exception):  # cancelled, or it failed: either way it has stopped
                self._forwarder.result(timeout=10)
            self._forwarder = None
        for proc in self.functions.values():
            if proc.poll() is None:
                os.killpg(proc.pid, 15)
        for proc in self.functions.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
        self.functions.clear()
        for name in (self.push_subscription, self.dead_letter_subscription):
            with contextlib.suppress(gexc.GoogleAPIError):
                self.subscriber.delete_subscription(subscription=name, timeout=5)
        if self.fake is not None:
            self.fake.stop()
            self.fake = None

    def __enter__(self) -> CloudFlow:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- using it ------------------------------------------------------------------------

    def settings(self, **overrides: Any) -> Settings:
        """The deployment's settings, as the functions read them (for a client in the test)."""
        saved = dict(os.environ)
        try:
            os.environ.update(self.env)
            return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def started_envs(self) -> list[dict[str, str]]:
        """The container environment of every execution the Cloud Run fake started, oldest first."""
        assert self.fake is not None, "the flow is not running"
        return [
            {var.name: var.value for container in execution.template.containers for var in container.env}
            for execution in self.fake.executions()
        ]

    def dead_letters(self, max_messages: int = 100) -> list[pubsub_v1.types.ReceivedMessage]:
        """Pull (and ack) what reached the dead-letter topic so far."""
        response = self.subscriber.pull(
            subscription=self.dead_letter_subscription, max_messages=max_messages, return_immediately=True, timeout=10
        )
        if response.received_messages:
            self.subscriber.acknowledge(
                subscription=self.dead_letter_subscription, ack_ids=[m.ack_id for m in response.received_messages]
            )
        return list(response.received_messages)


def _wait_http(url: str, proc: subprocess.Popen[bytes], what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise EmulatorUnavailableError(f"{what} exited at start (code {proc.returncode})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise EmulatorUnavailableError(f"{what} did not answer within {timeout_s:.0f}s")
