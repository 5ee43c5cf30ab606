"""Settings: read from the environment, and written back out for the processes AgentFleet starts."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from pydantic import SecretStr

from agentfleet.errors import ConfigError
from agentfleet.settings import SEED_NAMES, McpServerConfig, Settings, load_settings


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


def test_mcp_servers_read_a_url_alone_or_a_whole_server_and_write_back_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = {
        "db": "https://toolbox-abc.a.run.app/mcp",
        "code": {"module": "code_assistant", "args": ["--root", "{workspace}"], "tools": ["outline"], "always": True},
        "tool": {"command": ["my-server", "--stdio"], "env": {"DATABASE_URL": "postgresql://u:hunter2@db/x"}},
    }
    monkeypatch.setenv("AGENTFLEET_MCP_SERVERS", json.dumps(given))
    read = Settings(_env_file=None)  # type: ignore[call-arg]
    servers = read.mcp_servers
    assert servers["db"] == McpServerConfig(url="https://toolbox-abc.a.run.app/mcp")
    assert servers["db"].transport == "streamable-http" and servers["code"].transport == "stdio"
    assert servers["code"].always and servers["code"].tools == ["outline"]
    assert "hunter2" not in repr(servers["tool"]) and "hunter2" not in repr(read)
    monkeypatch.setenv("AGENTFLEET_MCP_SERVERS", read.environment()["AGENTFLEET_MCP_SERVERS"])
    assert Settings(_env_file=None).mcp_servers == servers  # type: ignore[call-arg]


def test_mcp_servers_come_on_top_of_the_built_in_ones_and_null_removes_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("agentfleet.settings.BUILTIN_MCP_SERVERS", {"code": McpServerConfig(module="code_assistant")})
    assert Settings(_env_file=None).mcp_servers == {"code": McpServerConfig(module="code_assistant")}  # type: ignore[call-arg]
    monkeypatch.setenv("AGENTFLEET_MCP_SERVERS", '{"code": null, "db": "https://db.example.com/mcp"}')
    read = Settings(_env_file=None)  # type: ignore[call-arg]
    assert set(read.mcp_servers) == {"db"}
    monkeypatch.setenv("AGENTFLEET_MCP_SERVERS", read.environment()["AGENTFLEET_MCP_SERVERS"])
    assert set(Settings(_env_file=None).mcp_servers) == {"db"}  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"x": {"url": "https://a/mcp", "module": "code_assistant"}}, "give exactly one of url, module or command"),
        ({"x": {}}, "give exactly one of url, module or command (given: none)"),
        (
            {"x": {"url": "https://a/mcp", "args": ["-v"]}},
            "args, env, settings_env and network_args are for a stdio server",
        ),
        ({"x": {"module": "code_assistant", "tool": ["a"]}}, "Extra inputs are not permitted"),
        ({"Bad Name": "https://a/mcp"}, "MCP server name 'Bad Name'"),
        ({"x": "ftp://a/mcp"}, "String should match pattern"),
    ],
)
def test_a_bad_mcp_server_is_refused_saying_what_is_wrong(
    given: dict, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTFLEET_MCP_SERVERS", json.dumps(given))
    with pytest.raises(ConfigError, match="mcp_servers") as raised:
        load_settings()
    assert said in str(raised.value)
