"""One Settings object, read once at each entry point from the environment and `.env`.

The seed's variable names are kept as they were (PROJECT_ID, REGION, GCS_BUCKET, LLM_API_KEY,
DATABASE_URL, GPT_OSS_URL); everything else is prefixed AGENTFLEET_.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentfleet"


SEED_NAMES = frozenset({"project_id", "region", "gcs_bucket", "llm_api_key", "database_url", "gpt_oss_url"})


def _seed(name: str) -> AliasChoices:
    """Accept the seed's bare name and the prefixed one."""
    return AliasChoices(name, f"AGENTFLEET_{name}")


class McpServerConfig(BaseModel):
    """One MCP server the agents may use (AGENTFLEET_MCP_SERVERS maps a name to one): over
    streamable HTTP at `url`, or started over stdio beside the workspace server, as one of
    AgentFleet's own servers (`module`: agentfleet.mcp_servers.MODULE) or any `command`. In
    `args` (and a command), `{workspace}` stands for the task's workspace root."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str | None = Field(None, pattern=r"^https?://[^\s@/]+(/\S*)?$")
    module: str | None = Field(None, pattern=r"^[a-z][a-z0-9_]*$")
    command: list[str] | None = Field(None, min_length=1)
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, repr=False, description="Environment of a stdio server (may hold secrets: never shown)"
    )
    network_args: list[str] = Field(
        default_factory=list, description="Arguments added for a task that allows the network (e.g. --network)"
    )
    settings_env: list[Literal["database_url"]] = Field(
        default_factory=list, description="Settings a stdio server gets in its environment by their seed name"
    )
    tools: list[str] | None = Field(None, description="The tools offered to the agent (default: all the server has)")
    always: bool = Field(False, description="Connected for every task, named or not")
    identity_token: bool | None = Field(None, description="Send a Google identity token (default: for *.run.app)")

    @model_validator(mode="after")
    def _one_kind(self) -> McpServerConfig:
        given = [k for k in ("url", "module", "command") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of url, module or command (given: {', '.join(given) or 'none'})")
        if self.url is not None and (self.args or self.env or self.settings_env or self.network_args):
            raise ValueError(
                "args, env, settings_env and network_args are for a stdio server (module or command), not a url"
            )
        return self

    @property
    def transport(self) -> Literal["stdio", "streamable-http"]:
        return "streamable-http" if self.url else "stdio"


BUILTIN_MCP_SERVERS: dict[str, McpServerConfig] = {
    "code": McpServerConfig(module="code_assistant", args=["--root", "{workspace}"]),
    "media": McpServerConfig(module="genmedia", args=["--prefix", "tasks/{task_id}/media"]),
    "computer": McpServerConfig(
        module="computer", args=["--prefix", "tasks/{task_id}/screenshots"], network_args=["--network"]
    ),
    "a2a": McpServerConfig(module="a2a_bridge"),
    "db": McpServerConfig(module="toolbox", args=["--transport", "stdio"], settings_env=["database_url"]),
}
"""AgentFleet's own shared servers, by the name a task gives: available over stdio unless
AGENTFLEET_MCP_SERVERS gives the name another server (a Cloud Run URL) or null (none)."""


class Settings(BaseSettings):
    """Everything configurable. Field names map to AGENTFLEET_<NAME> unless noted."""

    model_config = SettingsConfigDict(env_prefix="AGENTFLEET_", env_file=".env", extra="ignore", populate_by_name=True)

    backend: Literal["local", "gcp"] = Field("local", description="Which implementations: local (embedded) or gcp")
    home: Path = Field(default_factory=_default_home, description="Local data: mirrors, workspaces, artifacts")

    # Seed names.
    project_id: str | None = Field(None, validation_alias=_seed("PROJECT_ID"), description="Google Cloud project")
    region: str = Field("us-central1", validation_alias=_seed("REGION"), description="Google Cloud region")
    gcs_bucket: str | None = Field(
        None, validation_alias=_seed("GCS_BUCKET"), description="Bucket of artifacts and workspace snapshots"
    )
    llm_api_key: SecretStr = Field(
        SecretStr("not-needed"), validation_alias=_seed("LLM_API_KEY"), description="API key of the model endpoint"
    )
    database_url: str | None = Field(
        None, validation_alias=_seed("DATABASE_URL"), description="Database of the shared database MCP server"
    )
    gpt_oss_url: str | None = Field(
        None, validation_alias=_seed("GPT_OSS_URL"), description="OpenAI-compatible base URL; unset: the embedded model"
    )

    # The model.
    model: str = Field("openai/gpt-oss-20b", description="Model name sent to the endpoint")
    model_profile: str = Field("auto", description="Tool protocol profile; 'auto' picks by model name")
    llm_max_reply_tokens: int | None = Field(None, ge=16, description="Cap on one model reply (None: the server's)")
    llm_timeout_s: float = Field(
        300.0, gt=0, description="Seconds the model may stay silent in one request (the embedded model: at least 1800)"
    )
    llm_wait_s: float = Field(
        600.0, ge=0, description="How long a task waits for a model that is away (scaled to zero, overloaded)"
    )
    llm_stream: bool = Field(
        True, description="Stream replies (progress while the model writes); off for servers without it"
    )
    progress_interval_s: float = Field(
        1.0, ge=0.2, description="How often a progress event reports a reply being written"
    )
    llm_embedded: bool = Field(
        False, description="Set by the command that started the embedded model: messages then name it, not GPT_OSS_URL"
    )
    reasoning_effort: Literal["low", "medium", "high"] = Field(
        "high", description="Reasoning effort asked of models whose profile sends it (gpt-oss)"
    )
    llm_identity_token: bool | None = Field(
        None,
        description="Send a Google identity token to GPT_OSS_URL (private Cloud Run); default: for *.run.app URLs",
    )

    # The embedded local model, started when GPT_OSS_URL is not set.
    embedded_model: str = Field("qwen2.5-coder-1.5b", description="Embedded model started when GPT_OSS_URL is unset")
    embedded_ctx: int = Field(8192, ge=512, le=131_072, description="Context window of the embedded model")
    embedded_threads: int = Field(0, ge=0, description="CPU threads for the embedded model; 0: all cores")

    # Task policy.
    allow_local_repos: bool | None = Field(
        None, description="Accept local paths and file:// URLs; default: yes for local, no for gcp"
    )
    max_repos: int = Field(10, ge=1, description="Repositories one task may name")
    max_files: int = Field(50, ge=0, description="Input files one task may name")
    default_max_steps: int = Field(50, ge=1, description="Step limit when a task sets none")
    default_timeout_s: int = Field(3600, ge=10, description="Wall-time limit when a task sets none")
    default_max_tokens: int = Field(2_000_000, ge=1, description="Token limit when a task sets none")
    max_patch_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest patch kept as an artifact; a bigger one is refused"
    )

    # Shared MCP servers (streamable HTTP). A task names a configured one, or gives a URL that is allowed.
    mcp_servers: dict[str, McpServerConfig] = Field(
        default_factory=lambda: dict(BUILTIN_MCP_SERVERS),
        description='Shared MCP servers by name, added to the built-in ones, JSON: {"name": "https://host/mcp"} or '
        '{"name": {"module"|"command"|"url": …, "tools": [...], "always": true}}; null removes a built-in one',
    )
    mcp_allowed_urls: list[str] = Field(
        default_factory=list, description="URL prefixes a task may give for an MCP server itself (JSON list)"
    )
    mcp_allow_private: bool = Field(
        False, description="Let a task's MCP URL reach loopback, private or link-local addresses"
    )

    # The control plane.
    max_concurrent_per_workspace: int = Field(1, ge=1, description="Executions at once per workspace")
    max_attempts: int = Field(3, ge=1, description="Attempts before a silent task is FAILED")
    heartbeat_interval_s: float = Field(10.0, gt=0, description="Agent heartbeat period")
    agent_prefork: bool = Field(
        True, description="Local: fork each agent from a process that imported it once (off: a fresh interpreter)"
    )
    heartbeat_timeout_s: float = Field(60.0, gt=0, description="Silence after which the reaper acts")
    reap_interval_s: float = Field(15.0, gt=0, description="How often `agentfleet serve` runs the reaper")
    api_token: SecretStr | None = Field(None, description="Bearer token the HTTP API requires")

    # Google Cloud (AGENTFLEET_BACKEND=gcp). The clients honour FIRESTORE_EMULATOR_HOST,
    # PUBSUB_EMULATOR_HOST and STORAGE_EMULATOR_HOST; cloud_run_endpoint is their Cloud Run twin.
    firestore_database: str = Field("(default)", description="Firestore database id")
    tasks_collection: str = Field("tasks", description="Firestore collection of tasks (events in a subcollection)")
    pubsub_topic: str = Field("agentfleet-tasks", description="Pub/Sub topic the dispatch function listens on")
    job_image: str | None = Field(None, description="Agent container image of the Cloud Run Jobs")
    job_service_account: str | None = Field(None, description="Service account the agent jobs run as")
    job_cpu: str = Field("2", description="CPUs of one agent execution")
    job_memory: str = Field("4Gi", description="Memory of one agent execution")
    job_timeout_s: int = Field(3600, ge=60, description="Cloud Run task timeout of one execution")
    job_max_retries: int = Field(0, ge=0, le=10, description="Cloud Run's own retries (the reaper retries too)")
    job_secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of the agent jobs from Secret Manager: variable name → secret version resource",
    )
    job_sandbox: Literal["bwrap", "none"] = Field(
        "bwrap", description="The agent jobs' sandbox: bwrap, or none (the container is the only sandbox)"
    )
    cloud_run_endpoint: str | None = Field(
        None, description="host:port of a plaintext Cloud Run Admin API (the test fake) instead of Google's"
    )
    artifacts_prefix: str = Field("", description="Key prefix of every artifact in the bucket")
    workspace_snapshots: bool | None = Field(
        None, description="Restore/save one workspace archive per workspace; default: yes for gcp, no for local"
    )

    # The sandbox.
    sandbox: Literal["bwrap", "none"] = Field("bwrap", description="bwrap, or none (needs allow_unsandboxed)")
    allow_unsandboxed: bool = Field(False, description="Run commands without isolation where bubblewrap is missing")
    sandbox_uid: int = Field(65534, ge=1, description="Unprivileged user commands run as when AgentFleet is root")
    sandbox_gid: int = Field(65534, ge=1, description="Its group")
    exec_output_limit: int = Field(16_000, ge=100, description="Characters of command output kept (head and tail)")
    exec_max_timeout_s: int = Field(1800, ge=1, description="The most a single command may run")
    sandbox_max_processes: int = Field(512, ge=0, description="Processes the sandbox user may run (0: no limit)")
    sandbox_memory_bytes: int = Field(4 << 30, ge=0, description="Address space of each sandboxed process (0: none)")
    sandbox_file_size_bytes: int = Field(1 << 30, ge=0, description="Largest file a command may write (0: no limit)")
    sandbox_tmp_bytes: int = Field(1 << 30, ge=0, description="Size of the sandbox's RAM-backed /tmp (0: no limit)")
    sandbox_shm_bytes: int = Field(256 << 20, ge=0, description="Size of the sandbox's /dev/shm (0: no limit)")
    setup_timeout_s: int = Field(1800, ge=1, description="The most the setup step may run")
    setup_network: bool = Field(
        True, description="Let the setup step reach the network (the agent's commands: per task)"
    )
    setup_env: dict[str, str] = Field(
        default_factory=dict, description="Environment of the setup step only, JSON (a private index, a token)"
    )
    default_setup: bool = Field(
        True, description="Set up a recognised Python or Node project that has no setup of its own (see README)"
    )
    check_timeout_s: int = Field(900, ge=1, description="The most one run of an acceptance check may take")
    check_retries: int = Field(
        2, ge=0, le=10, description="Times a failed acceptance check sends the agent back to work"
    )
    memory: Literal["builtin", "off"] = Field(
        "builtin",
        description="Memory per workspace (finished tasks, the agent's notes): `builtin` (SQLite FTS5 locally, "
        "Firestore on gcp), or `off`",
    )

    # Git.
    git_author_name: str = Field("AgentFleet", description="Author and committer of a pushed branch")
    git_author_email: str = Field("agentfleet@localhost", description="Their e-mail")
    git_token: SecretStr | None = Field(
        None, description="HTTPS token the host's git sends to fetch and push private repositories"
    )

    @field_validator("mcp_servers", mode="before")
    @classmethod
    def _mcp_servers(cls, value: object) -> object:
        """A URL alone for an HTTP server; merged over the built-in servers; null removes one."""
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        if not isinstance(value, dict):
            return value
        merged: dict[str, object] = dict(BUILTIN_MCP_SERVERS)
        for name, spec in value.items():
            if not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_-]{0,39}", name):
                raise ValueError(f"MCP server name {name!r}: lowercase letters, digits, - and _, at most 40")
            if spec is None:
                merged.pop(name, None)
            else:
                merged[name] = {"url": spec} if isinstance(spec, str) else spec
        return merged

    @field_validator("api_token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value().strip()
        if not token:
            raise ValueError("AGENTFLEET_API_TOKEN is blank; set it to a secret token, or leave it unset")
        if any(ch.isspace() or ord(ch) < 32 for ch in token):
            raise ValueError("AGENTFLEET_API_TOKEN holds spaces or control characters; use a token without them")
        return SecretStr(token)

    @property
    def local_repos_allowed(self) -> bool:
        if self.allow_local_repos is not None:
            return self.allow_local_repos
        return self.backend == "local"

    @property
    def snapshots_enabled(self) -> bool:
        if self.workspace_snapshots is not None:
            return self.workspace_snapshots
        return self.backend == "gcp"

    @property
    def location(self) -> str:
        """projects/P/locations/R, the parent of the Cloud Run Jobs (ConfigError without PROJECT_ID)."""
        return f"projects/{self.require('project_id')}/locations/{self.region}"

    def require(self, name: str) -> str:
        """The value of a setting the gcp backend cannot do without; ConfigError naming the variable."""
        value = getattr(self, name)
        if not value:
            from agentfleet.errors import ConfigError

            env = name.upper() if name in SEED_NAMES else f"AGENTFLEET_{name.upper()}"
            raise ConfigError(f"{env} must be set for AGENTFLEET_BACKEND={self.backend}")
        return str(value)

    @property
    def mirrors_dir(self) -> Path:
        return self.home / "mirrors"

    @property
    def workspaces_dir(self) -> Path:
        return self.home / "workspaces"

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def setup_cache_dir(self) -> Path:
        return self.home / "setup-cache"

    def environment(self, *, exclude: Collection[str] = ("api_token",)) -> dict[str, str]:
        """These settings as the environment variables that give them back (None values left out):
        how a process this one starts gets exactly its settings, none of those in `exclude`."""
        env = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in exclude or value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, bool):
                value = "true" if value else "false"
            elif name == "mcp_servers":
                value = self.mcp_servers_json()
            elif isinstance(value, dict | list):
                value = json.dumps(value)
            env[name.upper() if name in SEED_NAMES else f"AGENTFLEET_{name.upper()}"] = str(value)
        return env

    def mcp_servers_json(self) -> str:
        """AGENTFLEET_MCP_SERVERS that gives these servers back: each as set, a built-in one that is
        gone as null."""
        servers: dict[str, object] = {
            k: v.model_dump(mode="json", exclude_defaults=True) for k, v in self.mcp_servers.items()
        }
        return json.dumps(servers | {k: None for k in BUILTIN_MCP_SERVERS if k not in servers}, sort_keys=True)

    def validation_context(self) -> dict[str, object]:
        """What TaskRequest validation needs to know about this deployment."""
        return {
            "allow_local_repos": self.local_repos_allowed,
            "max_repos": self.max_repos,
            "max_files": self.max_files,
            "mcp_servers": sorted(self.mcp_servers),
            "mcp_allowed_urls": list(self.mcp_allowed_urls),
        }


def load_settings() -> Settings:
    """Settings from the environment and `.env`; ConfigError naming what is wrong (never its value)."""
    from pydantic import ValidationError

    from agentfleet.errors import ConfigError, describe_validation_error

    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {describe_validation_error(exc)}") from None
