"""Google identity tokens for private Cloud Run services (the gpt-oss model service): the header
`X-Serverless-Authorization: Bearer <token>` for the service's URL, the token refreshed before it
expires. Given as a header per request (not an httpx `Auth`): the openai package's HTTP stack
differs between its major versions, its `extra_headers` does not.

Cloud Run checks that header in place of `Authorization` when it is present and passes
`Authorization` on to the container, so the model server's own API key (vLLM's `--api-key`, sent by
the OpenAI client as `Authorization: Bearer`) and the identity token travel side by side.
https://cloud.google.com/run/docs/authenticating/service-to-service
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

HEADER = "X-Serverless-Authorization"


def audience_of(url: str) -> str:
    """The audience Cloud Run accepts for `url`: its scheme and host, without the path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def wants_identity_token(url: str | None, setting: bool | None) -> bool:
    """Whether requests to `url` carry an identity token: as set, else for Cloud Run URLs (*.run.app)."""
    if not url:
        return False
    if setting is not None:
        return setting
    host = urlsplit(url).hostname or ""
    return urlsplit(url).scheme == "https" and host.endswith(".run.app")


class IdentityToken:
    """A Google identity token for `audience`, as a request header. `credentials`: google-auth
    credentials that mint identity tokens (default: from the environment, e.g. the Cloud Run job's
    service account through the metadata server); `request`: google-auth's transport for refreshing.
    The token is refreshed when google-auth no longer holds it valid (minutes before it expires)."""

    def __init__(self, audience: str, credentials: Any | None = None, request: Any | None = None) -> None:
        self.audience = audience
        self._credentials = credentials
        self._request = request
        self._lock = threading.Lock()

    def _google_request(self) -> Any:
        if self._request is None:
            import google.auth.transport.requests

            self._request = google.auth.transport.requests.Request()
        return self._request

    def token(self) -> str:
        """A valid identity token, minted or refreshed as needed."""
        with self._lock:
            request = self._google_request()
            if self._credentials is None:
                import google.oauth2.id_token

                self._credentials = google.oauth2.id_token.fetch_id_token_credentials(self.audience, request)
            if not self._credentials.valid:
                self._credentials.refresh(request)
            return str(self._credentials.token)

    def headers(self) -> dict[str, str]:
        """The header that carries the token (blocking while it is minted or refreshed)."""
        return {HEADER: f"Bearer {self.token()}"}


def identity_auth(token: IdentityToken) -> Any:
    """An httpx2 `Auth` that puts `token`'s header on every request (the MCP client's HTTP stack):
    minted in a worker thread, so a refresh never blocks the event loop."""
    import anyio.to_thread
    import httpx2

    class _IdentityAuth(httpx2.Auth):
        def sync_auth_flow(self, request: httpx2.Request) -> Any:
            request.headers.update(token.headers())
            yield request

        async def async_auth_flow(self, request: httpx2.Request) -> Any:
            request.headers.update(await anyio.to_thread.run_sync(token.headers))
            yield request

    return _IdentityAuth()
