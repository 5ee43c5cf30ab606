"""Cloud Functions entry points (functions-framework): thin shells around agentfleet.

- `orchestrate` (HTTP): the HTTP API, agentfleet.api.Api.
- `dispatch` (CloudEvent, Pub/Sub messagePublished via Eventarc): agentfleet.api.pubsub.handle_delivery.
- `reap` (HTTP, called by Cloud Scheduler): Service.reap.

Settings, backends and the Service are built once per instance, at the first call.
"""

from __future__ import annotations

import logging
import threading

import flask
import functions_framework
from cloudevents.http import CloudEvent
from werkzeug.wrappers import Response

from agentfleet.api.http import Api, error_response, reap_response
from agentfleet.api.pubsub import handle_delivery
from agentfleet.backends import build_backends
from agentfleet.logs import configure_logging
from agentfleet.service import Service
from agentfleet.settings import Settings

logger = logging.getLogger("agentfleet.functions")
_api: Api | None = None
"""The instance's API (and, through it, its Service); tests may set one of their own."""
_building = threading.Lock()
"""Held while the first call builds the API: the requests of a burst at a cold start wait for that
one instead of each building clients of their own on the same cores."""


def get_api() -> Api:
    global _api
    if _api is None:
        with _building:
            if _api is None:
                if not logging.getLogger().handlers:
                    configure_logging()
                settings = Settings()
                _api = Api(Service(build_backends(settings), settings))
    return _api


def _http_api() -> Api | Response:
    try:
        return get_api()
    except Exception:
        logger.exception("cannot build the service from the settings")
        return error_response(500, "the server cannot start; see the server logs")


@functions_framework.http
def orchestrate(request: flask.Request) -> flask.typing.ResponseReturnValue:
    api = _http_api()
    return api(request) if isinstance(api, Api) else api


@functions_framework.cloud_event
def dispatch(cloud_event: CloudEvent) -> None:
    handle_delivery(get_api().service, cloud_event.get_data())  # a failure to start raises: redelivered


@functions_framework.http
def reap(request: flask.Request) -> flask.typing.ResponseReturnValue:
    api = _http_api()
    return reap_response(api.service) if isinstance(api, Api) else api
