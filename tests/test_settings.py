"""Settings: read from the environment, and written back out for the processes AgentFleet starts."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from agentfleet.settings import SEED_NAMES, Settings


def test_settings_written_out_as_environment_read_back_the_same_without_the_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Settings(  # type: ignore[call-arg]
        _env_file=None, home=tmp_path, gpt_oss_url="http://127.0.0.1:9/v1", llm_api_key=SecretStr("sk-x"),
        sandbox_max_processes=7, allow_local_repos=False, api_token=SecretStr("server-only"), backend="local",
    )  # fmt: skip
    env = original.environment()
    assert "AGENTFLEET_API_TOKEN" not in env and "server-only" not in env.values()
    assert env["GPT_OSS_URL"] == "http://127.0.0.1:9/v1" and env["LLM_API_KEY"] == "sk-x"
    for name in list(os.environ):
        if name.startswith("AGENTFLEET_") or name in {"GPT_OSS_URL", "LLM_API_KEY", "PROJECT_ID", "REGION"}:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    again = Settings(_env_file=None)  # type: ignore[call-arg]
    assert again.model_dump(exclude={"api_token"}) == original.model_dump(exclude={"api_token"})
    assert again.api_token is None


def test_the_readme_configuration_table_names_every_setting_and_nothing_else() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    table = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)`", table, flags=re.MULTILINE))
    fields = {name.upper() if name in SEED_NAMES else f"AGENTFLEET_{name.upper()}" for name in Settings.model_fields}
    assert documented == fields, f"missing: {sorted(fields - documented)}; not settings: {sorted(documented - fields)}"


def test_every_setting_is_described_where_it_is_declared() -> None:
    undescribed = [name for name, field in Settings.model_fields.items() if not field.description]
    assert undescribed == []
