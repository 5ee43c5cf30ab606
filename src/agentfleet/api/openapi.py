"""The OpenAPI 3.1 document of the HTTP API, built from the route table (routes.py) and the
JSON schemas of the pydantic models the routes take and answer with (bodies.py)."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from agentfleet import __version__
from agentfleet.api.bodies import ErrorBody
from agentfleet.api.routes import COMMON_ERRORS, PUBLIC_ERRORS, ROUTES, Reply, Route, Schema

DESCRIPTION = """Run AI coding agents on git repositories.

Every error is JSON `{"error": "..."}`: 400 for invalid input, 401 without the bearer token (when
the server has one: a local `agentfleet serve` always has one), 403 when a local server is asked
for another host or from a web page, 404 for an unknown task or route, 405 (with `Allow`) for a
wrong method, 409 for a change the task's state does not allow (or an idempotency key reused for a
different request), 413 for a body over 1 MiB, 415 for a body that is not application/json, 500
for a server fault.

The web console (HTML for people, at `/` and `/console/`) is served beside this API and is not part
of this document; its session cookie opens none of these routes."""
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "description": "AGENTFLEET_API_TOKEN; a local `agentfleet serve` without one keeps its own in "
    "$AGENTFLEET_HOME/api-token (or a Google identity token when the function is behind IAM)",
}


def _models() -> list[tuple[type[BaseModel], Literal["validation", "serialization"]]]:
    """Every model the routes take (validation) or answer with (serialization), once each."""
    found: dict[type[BaseModel], Literal["validation", "serialization"]] = {ErrorBody: "serialization"}
    for route in ROUTES:
        if route.body is not None:
            found[route.body] = "validation"
        for reply in route.replies.values():
            if isinstance(reply.body, type):
                found.setdefault(reply.body, "serialization")
    return list(found.items())


def _schema(body: Schema, refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return refs[body.__name__] if isinstance(body, type) else body


def _reply(reply: Reply, refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": _schema(reply.body, refs)}}
    if reply.stream:
        content["text/event-stream"] = {"schema": {"type": "string"}, "description": reply.stream}
    return {"description": reply.description, "content": content}


def _operation(route: Route, refs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/ErrorBody"}
    errors = {**(PUBLIC_ERRORS if route.public else COMMON_ERRORS), **route.errors}
    responses = {str(status): _reply(reply, refs) for status, reply in route.replies.items()}
    for status, description in sorted(errors.items()):
        responses.setdefault(
            str(status), {"description": description, "content": {"application/json": {"schema": error}}}
        )
    operation: dict[str, Any] = {
        "operationId": _camel(route.endpoint),
        "summary": route.summary,
        "responses": responses,
    }
    if route.parameters:
        operation["parameters"] = list(route.parameters)
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[route.body.__name__]}},
        }
    if route.upload:
        binary = {"type": "string", "format": "binary"}
        multipart = {"type": "object", "properties": {"file": binary}, "required": ["file"]}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/octet-stream": {"schema": binary}, "multipart/form-data": {"schema": multipart}},
        }
    if route.public:
        operation["security"] = []
    return operation


def _camel(endpoint: str) -> str:
    first, *rest = endpoint.split("_")
    return first + "".join(word.title() for word in rest)


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (built once; callers must not change it)."""
    names, defs = models_json_schema(_models(), ref_template="#/components/schemas/{model}")
    refs = {model.__name__: ref for (model, _mode), ref in names.items()}
    paths: dict[str, dict[str, Any]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": "AgentFleet", "version": __version__, "description": DESCRIPTION},
        "paths": paths,
        "components": {"schemas": defs["$defs"], "securitySchemes": {"bearer": BEARER}},
        "security": [{"bearer": []}],
    }
