"""A regression guard, not a timing: the Google clients the `orchestrate` function builds.

Budget: the clients are built once per instance, at its first request; 0 more for every request
after it (a client per request costs a channel, its credentials and, for Pub/Sub, a batcher).
Through functions-framework's own app, against the Firestore and Pub/Sub emulators.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from functions_framework import create_app
from google.cloud import firestore, pubsub_v1, run_v2, storage  # type: ignore[attr-defined]

from agentfleet.settings import Settings

SOURCE = str(Path(__file__).parents[2] / "functions" / "main.py")
CLIENTS = {
    "firestore": firestore.Client,
    "pubsub publisher": pubsub_v1.PublisherClient,
    "storage": storage.Client,
    "cloud run jobs": run_v2.JobsClient,
    "cloud run executions": run_v2.ExecutionsClient,
}
AFTER_THE_FIRST_REQUEST = 0


def count_clients(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    built: Counter[str] = Counter()
    for name, cls in CLIENTS.items():
        real = cls.__init__

        def counting(self: Any, *args: Any, __real: Any = real, __name: str = name, **kwargs: Any) -> None:
            built[__name] += 1
            __real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", counting)
    return built


def test_the_orchestrate_function_builds_no_client_after_its_first_request(
    gcp_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in gcp_settings.environment(exclude=("api_token",)).items():
        monkeypatch.setenv(name, value)
    publisher = pubsub_v1.PublisherClient()
    publisher.create_topic(name=publisher.topic_path(gcp_settings.project_id, gcp_settings.pubsub_topic))
    built = count_clients(monkeypatch)
    client = create_app(target="orchestrate", source=SOURCE, signature_type="http").test_client()
    assert sys.modules["main"]._api is None  # type: ignore[attr-defined]  # a fresh instance
    body = {"query": "fix it", "repo_url": "https://github.com/acme/widgets"}

    assert client.post("/orchestrate", json=body).status_code == 202
    first = sum(built.values())
    statuses = [client.post("/orchestrate", json={**body, "query": f"fix {n}"}).status_code for n in range(10)]

    assert statuses == [202] * 10
    assert first > 0, "the counting does not see the clients"
    assert sum(built.values()) - first == AFTER_THE_FIRST_REQUEST, built
