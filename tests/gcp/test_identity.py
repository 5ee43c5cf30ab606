"""Identity tokens for a private Cloud Run model service, through google-auth's own code: a service
account key file (GOOGLE_APPLICATION_CREDENTIALS, as google-auth reads it) whose token endpoint is a
local OAuth server that checks the signed assertion and mints short-lived identity tokens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import google.auth.transport.requests
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth import crypt, jwt
from mcp.server.mcpserver import MCPServer
from pydantic import SecretStr

from agentfleet.agent.work import work_task
from agentfleet.gcp.identity import HEADER, IdentityToken, audience_of, wants_identity_token
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.settings import McpServerConfig
from agentfleet.tasks import McpServerSpec, Task, TaskOptions, TaskRequest, TaskStatus
from agentfleet.testing.asgi import serving
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply, tool_call

ACCOUNT = "agent@demo-project.iam.gserviceaccount.com"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"


@dataclass
class TokenServer:
    """Google's OAuth token endpoint for the JWT-bearer grant, as far as identity tokens go."""

    private_pem: bytes
    public_pem: bytes
    lifetime_s: int = 3600
    refuse: bool = False
    minted: list[dict] = field(default_factory=list)
    url: str = ""

    def grant(self, form: dict[str, list[str]]) -> tuple[int, dict]:
        if self.refuse:
            return 400, {"error": "invalid_grant", "error_description": "account disabled"}
        assert form["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
        # signed by the account's key, addressed to Google's token endpoint (as google-auth addresses it)
        claims = jwt.decode(form["assertion"][0], certs=self.public_pem, audience=GOOGLE_TOKEN_URI)
        now = int(time.time())
        token_claims = {
            "iss": "https://accounts.google.com",
            "aud": claims["target_audience"],
            "email": claims["iss"],
            "iat": now,
            "exp": now + self.lifetime_s,
            "n": len(self.minted),
        }
        self.minted.append(token_claims)
        token = jwt.encode(crypt.RSASigner.from_string(self.private_pem), token_claims)
        return 200, {"id_token": token.decode()}


@pytest.fixture
def token_server() -> Iterator[TokenServer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    server_state = TokenServer(private, public)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
            status, payload = server_state.grant(form)
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}/token"
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def key_file(token_server: TokenServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A service account key file as `gcloud iam service-accounts keys create` writes it."""
    path = tmp_path / "agent-key.json"
    info = {
        "type": "service_account",
        "project_id": "demo-project",
        "private_key_id": "test-key",
        "private_key": token_server.private_pem.decode(),
        "client_email": ACCOUNT,
        "client_id": "1",
        "token_uri": token_server.url,
    }
    path.write_text(json.dumps(info))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))
    return path


def bearer_claims(header: str) -> dict:
    scheme, _, token = header.partition(" ")
    assert scheme == "Bearer"
    return dict(jwt.decode(token, verify=False))


@pytest.mark.parametrize(
    ("url", "setting", "wanted"),
    [
        ("https://gpt-oss-abc123-uc.a.run.app/v1", None, True),
        ("https://gpt-oss-123456789.us-central1.run.app/v1", None, True),
        ("http://127.0.0.1:8000/v1", None, False),
        ("https://api.example.com/v1", None, False),
        ("http://127.0.0.1:8000/v1", True, True),
        ("https://gpt-oss-abc123-uc.a.run.app/v1", False, False),
        (None, True, False),
    ],
)
def test_which_endpoints_get_an_identity_token(url: str | None, setting: bool | None, wanted: bool) -> None:
    assert wants_identity_token(url, setting) is wanted


def test_the_audience_is_the_service_url_without_its_path() -> None:
    assert audience_of("https://gpt-oss-abc-uc.a.run.app/v1") == "https://gpt-oss-abc-uc.a.run.app"


def test_a_token_is_minted_once_and_reused_while_it_is_valid(token_server: TokenServer, key_file: Path) -> None:
    identity = IdentityToken("https://gpt-oss-abc-uc.a.run.app", request=google.auth.transport.requests.Request())
    headers = [identity.headers() for _ in range(3)]
    assert len(token_server.minted) == 1
    assert len({h[HEADER] for h in headers}) == 1
    claims = bearer_claims(headers[0][HEADER])
    assert (claims["aud"], claims["email"]) == ("https://gpt-oss-abc-uc.a.run.app", ACCOUNT)


def test_a_token_near_its_expiry_is_refreshed_before_it_is_sent(token_server: TokenServer, key_file: Path) -> None:
    token_server.lifetime_s = 60  # google-auth refreshes a token within minutes of its expiry
    identity = IdentityToken("https://gpt-oss-abc-uc.a.run.app")
    first, second = identity.headers()[HEADER], identity.headers()[HEADER]
    assert len(token_server.minted) == 2
    assert first != second
    assert [bearer_claims(h)["n"] for h in (first, second)] == [0, 1]


BUGGY = {"calc.py": "def add(a, b):\n    return a - b\n"}


def test_the_agent_sends_the_identity_token_beside_the_api_key(
    token_server: TokenServer, key_file: Path, repo_factory, settings
) -> None:
    script = [look(), reply("calc.add subtracts instead of adding.")]
    with ScriptedLLM(script) as llm:
        configured = settings.model_copy(
            update={"gpt_oss_url": llm.url, "llm_identity_token": True, "llm_api_key": SecretStr("vllm-key")}
        )
        request = TaskRequest(query="What is wrong with calc.py?", repo_url=str(repo_factory(BUGGY)))
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))
        seen = list(llm.request_headers)

    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert len(seen) == 2
    for headers in seen:
        lowered = {k.lower(): v for k, v in headers.items()}
        assert bearer_claims(lowered[HEADER.lower()])["aud"] == audience_of(llm.url)
        assert lowered["authorization"] == "Bearer vllm-key"  # the model server's own key, untouched
    assert len(token_server.minted) == 1


def test_a_refused_token_fails_the_task_saying_what_to_fix(
    token_server: TokenServer, key_file: Path, repo_factory, settings
) -> None:
    token_server.refuse = True
    with ScriptedLLM([reply("never asked")]) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url, "llm_identity_token": True})
        request = TaskRequest(query="What is wrong with calc.py?", repo_url=str(repo_factory(BUGGY)))
        task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))
        assert llm.requests == []

    assert task.status is TaskStatus.FAILED
    assert task.error and "cannot get a Google identity token" in task.error
    assert "AGENTFLEET_LLM_IDENTITY_TOKEN=false" in task.error and "account disabled" in task.error


def test_a_shared_mcp_server_on_cloud_run_gets_the_identity_token_on_every_request(
    token_server: TokenServer, key_file: Path, repo_factory, settings
) -> None:
    server = MCPServer("private")

    @server.tool()
    def hello() -> str:
        """Say hello."""
        return "hello from the private server"

    headers: list[dict[str, str]] = []

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers.append({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)

    app = server.streamable_http_app()
    with serving(recording) as base:
        url = f"{base}/mcp"
        private = McpServerConfig(url=url, identity_token=True)
        script = [reply(None, tool_call("hello", {})), reply("It said hello.")]
        with ScriptedLLM(script) as llm:
            configured = settings.model_copy(update={"gpt_oss_url": llm.url, "mcp_servers": {"private": private}})
            options = TaskOptions(mcp_servers=[McpServerSpec(name="private")])
            request = TaskRequest(query="Call hello", repo_url=str(repo_factory(BUGGY)), options=options)
            task = work_task(Task(request=request), configured, LocalArtifactStore(settings.artifacts_dir))
            said = llm.requests[-1]["messages"]

    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert any("hello from the private server" in (m.get("content") or "") for m in said)
    assert len(headers) >= 3  # initialize, list tools, the call (and the session's own requests)
    for seen in headers:
        assert bearer_claims(seen[HEADER.lower()])["aud"] == audience_of(url)
