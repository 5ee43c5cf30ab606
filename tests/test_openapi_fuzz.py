"""Schemathesis against a live `agentfleet serve`: every operation in GET /openapi.json gets generated
requests, valid and invalid, and every answer must be no 5xx, a declared status, a declared content
type and a body that matches the declared schema.

Random task ids and repository URLs reach only the 404 and 400 answers, so two more variants reach
the success answers: the task-id operations aimed at a task the server has, and submissions whose
repository URL is replaced by one that passes validation (a closed loopback port: the agent that
the dispatcher launches fails at its first fetch). The server has no model either.

Cases come from `APIOperation.as_strategy` under a plain `@given` rather than `schema.parametrize()`:
the pytest plugin's fixture-based loader (`schemathesis.pytest.from_fixture`, the way to load from a
server a fixture starts) sets `Function._nodeid`, which pytest 9.2 no longer has.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from agentfleet.api.openapi import openapi_document
from agentfleet.net import free_port
from tests.test_serve import server_process

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REPO = "https://127.0.0.1:9/none.git"
"""A repository URL that passes validation and fails at once when fetched (port 9 is closed)."""
DOCUMENT = openapi_document()
OPERATIONS = [(path, method.upper()) for path, item in DOCUMENT["paths"].items() for method in item]
"""Every operation, named from the in-process document so that collection needs no server."""


@dataclass(frozen=True)
class Live:
    url: str
    schema: schemathesis.BaseSchema
    task_id: str
    """A task the server has."""


def _negatable(path: str, method: str) -> bool:
    """The operation takes something that can be sent wrong: parameters, a body or a token."""
    operation = DOCUMENT["paths"][path][method.lower()]
    return bool(operation.get("parameters") or operation.get("requestBody") or operation.get("security", [{}]))


def _variants(path: str, method: str) -> Iterator[tuple[GenerationMode, str]]:
    yield GenerationMode.POSITIVE, "random"
    if _negatable(path, method):
        yield GenerationMode.NEGATIVE, "random"
    if "{task_id}" in path:
        yield GenerationMode.POSITIVE, "existing task"
        yield GenerationMode.NEGATIVE, "existing task"
    if path == "/orchestrate":
        yield GenerationMode.POSITIVE, "reachable repo"


CASES = [
    pytest.param(path, method, mode, variant, id=f"{method} {path} {mode.value} {variant}")
    for path, method in OPERATIONS
    for mode, variant in _variants(path, method)
]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    model = f"http://127.0.0.1:{free_port()}/v1"
    with server_process(tmp_path, model, AGENTFLEET_MAX_ATTEMPTS="1", AGENTFLEET_API_TOKEN=TOKEN) as (url, _):
        submitted = httpx.post(f"{url}/orchestrate", json={"query": "seed", "repo_url": REPO}, headers=AUTH, timeout=10)
        document = httpx.get(f"{url}/openapi.json", headers=AUTH, timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        schema.config.update(base_url=url, request_timeout=10)
        yield Live(url, schema, submitted.json()["task_id"])


def _with_reachable_repo(case: schemathesis.Case) -> schemathesis.Case:
    if isinstance(case.body, dict):
        case.body = {**case.body, "repo_url": REPO, "repos": []}
    return case


def _strategy(live: Live, path: str, method: str, mode: GenerationMode, variant: str) -> st.SearchStrategy:
    operation = live.schema[path][method]
    if variant == "existing task":
        return operation.as_strategy(generation_mode=mode, path_parameters={"task_id": live.task_id})
    strategy = operation.as_strategy(generation_mode=mode)
    return strategy.map(_with_reachable_repo) if variant == "reachable repo" else strategy


def test_the_live_document_lists_every_operation_fuzzed(live: Live) -> None:
    served = [(path, method.upper()) for path, item in live.schema.raw_schema["paths"].items() for method in item]
    assert sorted(served) == sorted(OPERATIONS)


@pytest.mark.parametrize(("path", "method", "mode", "variant"), CASES)
def test_every_operation_answers_as_its_openapi_document_says(
    live: Live, path: str, method: str, mode: GenerationMode, variant: str
) -> None:
    @given(case=_strategy(live, path, method, mode, variant))
    @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck), database=None)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS, headers=AUTH)

    check()


def test_an_event_seq_beyond_64_bits_is_refused_with_a_400(live: Live) -> None:
    events = f"{live.url}/tasks/{live.task_id}/events"
    too_big = str(2**64)
    by_query = httpx.get(events, params={"after": too_big}, headers=AUTH, timeout=10)
    stream = {**AUTH, "Last-Event-ID": too_big, "Accept": "text/event-stream"}
    by_header = httpx.get(events, headers=stream, timeout=10)
    assert (by_query.status_code, by_header.status_code) == (400, 400)
    assert "at most 9223372036854775807" in by_query.json()["error"]
