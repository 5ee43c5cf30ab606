"""Schemathesis against a live `agentfleet serve`: every operation in GET /openapi.json gets generated
requests (valid and invalid), and every answer must be no 5xx, a declared status, a declared
content type and a body that matches the declared schema.

The server has no model (GPT_OSS_URL points at a closed port): a request that passes validation
only queues a task whose agent fails fast, which is all intake needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from test_serve import free_port, serving

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def live_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp_path: Path = tmp_path_factory.mktemp("fuzz")
    with serving(tmp_path, f"http://127.0.0.1:{free_port()}/v1", AGENTFLEET_MAX_ATTEMPTS="1") as url:
        yield url


@pytest.fixture
def api_schema(live_url: str) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    schema.config.update(base_url=live_url, request_timeout=10)
    return schema


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.timeout(180)
@schema.parametrize()
@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_its_openapi_document_says(case: schemathesis.Case) -> None:
    case.call_and_validate(checks=CHECKS, timeout=10)
