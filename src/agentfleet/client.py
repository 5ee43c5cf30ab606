"""A small client for the AgentFleet HTTP API (a local `agentfleet serve` or the deployed
orchestrate function)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from agentfleet.errors import AgentFleetError
from agentfleet.memory import MemoryEntry
from agentfleet.tasks import Task, TaskEvent


class ApiError(AgentFleetError, RuntimeError):
    """The server answered with an error; the message is the server's."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status


def identity_token(audience: str) -> str | None:
    """An identity token for a Cloud Functions/Run URL from the ambient Google credentials."""
    try:
        import google.auth.transport.requests
        import google.oauth2.id_token
    except ImportError:
        return None
    try:
        request = google.auth.transport.requests.Request()
        return str(google.oauth2.id_token.fetch_id_token(request, audience))
    except Exception:  # no ambient credentials: the request goes without a token
        return None


class Client:
    def __init__(self, server: str, token: str | None = None, timeout_s: float = 30.0) -> None:
        self.server = server.rstrip("/")
        if token is None and self.server.startswith("https://"):
            token = identity_token(self.server)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.server, headers=headers, timeout=timeout_s)

    def _json(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except (json.JSONDecodeError, AttributeError):
                message = response.text[:500]
            raise ApiError(response.status_code, message)
        return response.json()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            try:
                return self._json(self.http.request(method, path, **kwargs))
            except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                # The server closed (or reset) the kept-alive connection as the request went out
                # (its idle timeout): a read is sent again once, on a new connection. A write is
                # not: it may have been done, and sending it again could submit a task twice.
                if method not in ("GET", "HEAD"):
                    raise
                return self._json(self.http.request(method, path, **kwargs))
        except httpx.TransportError as exc:
            raise ApiError(0, f"cannot reach {self.server}: {exc}; is `agentfleet serve` running?") from exc

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", "/orchestrate", json=body)
        return result

    def followup(self, task_id: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/tasks/{task_id}/followup", json=body)
        return result

    def chain(self, task_id: str) -> list[Task]:
        return [Task.model_validate(t) for t in self._call("GET", f"/tasks/{task_id}/chain")["tasks"]]

    def upload(self, path: Path, name: str) -> str:
        """Upload the file at `path` as the input file `name` (POST /files); its key."""
        with path.open("rb") as fh:
            result = self._call(
                "POST",
                "/files",
                params={"name": name},
                content=fh.read(),
                headers={"Content-Type": "application/octet-stream"},
            )
        return str(result["key"])

    def task(self, task_id: str) -> Task:
        return Task.model_validate(self._call("GET", f"/tasks/{task_id}"))

    def tasks(self, status: str | None = None, workspace: str | None = None, limit: int = 100) -> list[Task]:
        params: dict[str, Any] = {k: v for k, v in {"status": status, "workspace": workspace}.items() if v}
        params["limit"] = limit
        return [Task.model_validate(t) for t in self._call("GET", "/tasks", params=params)["tasks"]]

    def cancel(self, task_id: str) -> Task:
        return Task.model_validate(self._call("POST", f"/tasks/{task_id}/cancel"))

    def reset_workspace(self, workspace_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/workspaces/{workspace_id}/reset")
        return result

    def memory(self, workspace_id: str, query: str | None = None, limit: int = 50) -> list[MemoryEntry]:
        params: dict[str, Any] = {"limit": limit} | ({"q": query} if query else {})
        data = self._call("GET", f"/workspaces/{quote(workspace_id, safe='')}/memory", params=params)
        return [MemoryEntry.model_validate(e) for e in data["entries"]]

    def clear_memory(self, workspace_id: str) -> int:
        return int(self._call("DELETE", f"/workspaces/{quote(workspace_id, safe='')}/memory")["removed"])

    def containers(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/containers")
        return result

    def events(self, task_id: str, after: int = 0) -> list[TaskEvent]:
        data = self._call("GET", f"/tasks/{task_id}/events", params={"after": after})
        return [TaskEvent.model_validate(e) for e in data["events"]]

    def stream(self, task_id: str, after: int = 0) -> Iterator[TaskEvent]:
        """Follow the task's events as Server-Sent Events until the server ends the stream."""
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(after)}
        try:
            with self.http.stream("GET", f"/tasks/{task_id}/events", headers=headers, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    self._json(response)
                yield from _parse_sse(response.iter_lines())
        except httpx.TransportError as exc:
            raise ApiError(0, f"lost the event stream from {self.server}: {exc}") from exc


def _parse_sse(lines: Iterator[str]) -> Iterator[TaskEvent]:
    kind, data = None, []
    for line in lines:
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif line == "":
            if kind == "end":
                return
            if data:
                yield TaskEvent.model_validate_json("\n".join(data))
            kind, data = None, []
