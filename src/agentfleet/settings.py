"""One Settings object, read once at each entry point from the environment and `.env`.

The seed's variable names are kept as they were (PROJECT_ID, REGION, GCS_BUCKET, LLM_API_KEY,
DATABASE_URL, GPT_OSS_URL); everything else is prefixed AGENTFLEET_.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "agentfleet"


def _seed(name: str) -> AliasChoices:
    """Accept the seed's bare name and the prefixed one."""
    return AliasChoices(name, f"AGENTFLEET_{name}")


class Settings(BaseSettings):
    """Everything configurable. Field names map to AGENTFLEET_<NAME> unless noted."""

    model_config = SettingsConfigDict(env_prefix="AGENTFLEET_", env_file=".env", extra="ignore", populate_by_name=True)

    backend: Literal["local", "gcp"] = "local"
    home: Path = Field(default_factory=_default_home, description="Local data: mirrors, workspaces, artifacts")

    # Seed names.
    project_id: str | None = Field(None, validation_alias=_seed("PROJECT_ID"))
    region: str = Field("us-central1", validation_alias=_seed("REGION"))
    gcs_bucket: str | None = Field(None, validation_alias=_seed("GCS_BUCKET"))
    llm_api_key: SecretStr = Field(SecretStr("not-needed"), validation_alias=_seed("LLM_API_KEY"))
    database_url: str | None = Field(None, validation_alias=_seed("DATABASE_URL"))
    gpt_oss_url: str | None = Field(None, validation_alias=_seed("GPT_OSS_URL"))

    # The model.
    model: str = "openai/gpt-oss-20b"
    model_profile: str = Field("auto", description="Tool protocol profile; 'auto' picks by model name")
    llm_max_reply_tokens: int | None = Field(None, ge=16, description="Cap on one model reply (None: the server's)")
    llm_timeout_s: float = 300.0
    llm_retries: int = 2

    # The embedded local model, started when GPT_OSS_URL is not set.
    embedded_model: str = "qwen2.5-coder-1.5b"
    embedded_ctx: int = Field(8192, ge=512, le=131_072, description="Context window of the embedded model")
    embedded_threads: int = Field(0, ge=0, description="CPU threads for the embedded model; 0: all cores")

    # Task policy.
    allow_local_repos: bool | None = Field(
        None, description="Accept local paths and file:// URLs; default: yes for local, no for gcp"
    )
    max_repos: int = 10
    max_files: int = 50
    default_max_steps: int = 50
    default_timeout_s: int = 3600
    default_max_tokens: int = 2_000_000

    # The control plane.
    max_concurrent_per_workspace: int = Field(1, ge=1, description="Executions at once per workspace")
    max_attempts: int = Field(3, ge=1, description="Attempts before a silent task is FAILED")
    heartbeat_interval_s: float = Field(10.0, gt=0)
    heartbeat_timeout_s: float = Field(60.0, gt=0, description="Silence after which the reaper acts")
    reap_interval_s: float = Field(15.0, gt=0)
    api_token: SecretStr | None = Field(None, description="Bearer token the HTTP API requires")

    # The sandbox.
    sandbox: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    exec_output_limit: int = 16_000
    exec_max_timeout_s: int = 1800
    setup_timeout_s: int = 1800

    # Git.
    git_author_name: str = "AgentFleet"
    git_author_email: str = "agentfleet@localhost"

    @property
    def local_repos_allowed(self) -> bool:
        if self.allow_local_repos is not None:
            return self.allow_local_repos
        return self.backend == "local"

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

    def validation_context(self) -> dict[str, object]:
        """What TaskRequest validation needs to know about this deployment."""
        return {
            "allow_local_repos": self.local_repos_allowed,
            "max_repos": self.max_repos,
            "max_files": self.max_files,
        }
