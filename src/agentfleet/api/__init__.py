"""The control plane's adapters: the HTTP API (http.py: `Api`, mounted as the `orchestrate` Cloud
Function and by `agentfleet serve`), its one route table (routes.py), response bodies (bodies.py),
OpenAPI document (openapi.py), event pages and streams (events.py), and the Pub/Sub delivery
adapter of the `dispatch` function (pubsub.py); AgentFleet as an A2A agent beside the API (a2a.py)."""

from agentfleet.api.http import Api, reap_response

__all__ = ["Api", "reap_response"]
