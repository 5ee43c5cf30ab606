"""The database toolbox: Google's MCP Toolbox binary, configured by AgentFleet, reached over its real
HTTP endpoint with the `mcp` client, against a PostgreSQL 15 server this run starts and a SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from agentfleet.errors import ConfigError
from agentfleet.mcp_servers.toolbox import Toolbox, ToolboxError, default_binary
from agentfleet.mcp_servers.toolbox_config import ToolboxOptions, parse_database_url, render
from agentfleet.net import free_port
from agentfleet.testing.postgres import PostgresServer, postgres_available

ROOT = Path(__file__).resolve().parents[2]
# Quotes, a backslash and a `${...}`: the toolbox pastes environment values into its config's text.
PASSWORD = "s3cr\"et'\\pw${HOME}-7f3a9"


def _need(why: str | None) -> None:
    if why is None:
        return
    if os.environ.get("AGENTFLEET_REQUIRE_EMULATORS") == "1":
        pytest.fail(f"AGENTFLEET_REQUIRE_EMULATORS=1 but {why}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def binary() -> Path:
    found = default_binary()
    _need(None if found else "the MCP Toolbox binary is missing: run `make toolbox` (npm, mcp_servers/toolbox)")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    _need(postgres_available())
    server = PostgresServer(password=PASSWORD).start()
    server.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, name text NOT NULL);"
        "INSERT INTO users (name) SELECT 'user' || n FROM generate_series(1, 250) AS n;"
    )
    yield server
    server.stop()


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        db.executemany("INSERT INTO users (name) VALUES (?)", [(f"user{n}",) for n in range(1, 251)])
    return path


def call(url: str, *calls: tuple[str, dict[str, Any]], timeout_s: float | None = None) -> list[tuple[bool, str]]:
    """Each call's (is_error, text), over one MCP session on the toolbox's HTTP endpoint."""

    async def run() -> list[tuple[bool, str]]:
        out = []
        async with Client(url) as client:
            for name, arguments in calls:
                try:
                    result = await client.call_tool(name, arguments, read_timeout_seconds=timeout_s)
                except MCPError as exc:
                    out.append((True, f"client error: {exc}"))
                    continue
                text = "\n".join(getattr(item, "text", "") for item in result.content)
                out.append((result.is_error, text))
        return out

    return anyio.run(run)


def rows(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def tool_names(url: str) -> set[str]:
    async def run() -> set[str]:
        async with Client(url) as client:
            return {tool.name for tool in (await client.list_tools()).tools}

    return anyio.run(run)


# --- the generated configuration -----------------------------------------------------------------


def test_a_postgres_url_becomes_a_read_only_config_that_holds_no_credential() -> None:

    rendered = render(parse_database_url(f"postgresql://agent:{'pw%22x'}@db.internal:6543/app"), ToolboxOptions())
    assert "pw" not in rendered.text.replace("password", "") and "agent" not in rendered.text.replace("agentfleet", "")
    assert '"default_transaction_read_only": "on"' in rendered.text
    assert "execute_sql" not in rendered.text and '"port": "6543"' in rendered.text
    assert rendered.env["AGENTFLEET_TOOLBOX_DB_PASSWORD"].get_secret_value() == 'pw\\"x'


def test_writes_add_execute_sql_on_a_second_source_only_when_allowed(sqlite_db: Path) -> None:

    for url in (f"sqlite:///{sqlite_db}", "postgresql://agent:pw@127.0.0.1/app"):
        rendered = render(parse_database_url(url), ToolboxOptions(allow_writes=True))
        assert '"name": "execute_sql"' in rendered.text and '"source": "db-write"' in rendered.text
        assert not rendered.read_only_files


@pytest.mark.parametrize(
    "url",
    [
        "mysql://agent:hunter2@db/app",
        "postgresql://agent:hunter2@db:notaport/app",
        "postgresql://agent:hunter2@db/app?default_transaction_read_only=off",
        "postgresql://agent:hunter2@db",
        "sqlite:///no/such/hunter2.db",
    ],
)
def test_a_url_that_cannot_be_used_is_refused_without_showing_its_password(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_database_url(url)
    assert "hunter2@" not in str(caught.value) and ":hunter2" not in str(caught.value)


# --- PostgreSQL ------------------------------------------------------------------------------------


@pytest.fixture
def pg_toolbox(postgres: PostgresServer, binary: Path) -> Iterator[Toolbox]:
    options = ToolboxOptions(row_limit=100, statement_timeout_s=1)
    with Toolbox(parse_database_url(postgres.url()), options, binary=binary) as toolbox:
        yield toolbox


def test_postgres_tables_are_listed_described_and_queried_with_a_row_limit(pg_toolbox: Toolbox) -> None:
    assert tool_names(pg_toolbox.url) == {"list_tables", "describe_table", "query"}
    listed, described, queried, limited = call(
        pg_toolbox.url,
        ("list_tables", {"output_format": "simple"}),
        ("describe_table", {"table": "users"}),
        ("query", {"sql": "SELECT name FROM users WHERE id <= 3 ORDER BY id"}),
        ("query", {"sql": "SELECT * FROM users -- a comment cannot hide the limit"}),
    )
    assert not listed[0] and rows(listed[1])[0]["object_name"] == "users"
    assert [(c["column_name"], c["data_type"]) for c in rows(described[1])] == [("id", "integer"), ("name", "text")]
    assert rows(queried[1]) == [{"name": "user1"}, {"name": "user2"}, {"name": "user3"}]
    assert len(rows(limited[1])) == 100


def test_postgres_bad_sql_a_write_and_a_slow_query_are_tool_errors_and_it_keeps_serving(
    pg_toolbox: Toolbox, postgres: PostgresServer
) -> None:
    malformed, insert, two, slow, after = call(
        pg_toolbox.url,
        ("query", {"sql": "SELEC name FROM users"}),
        ("query", {"sql": "INSERT INTO users (name) VALUES ('x') RETURNING *"}),
        ("query", {"sql": "SELECT 1) SELECT 1; DELETE FROM users; WITH z AS (SELECT 1"}),
        ("query", {"sql": "SELECT pg_sleep(5)"}),
        ("query", {"sql": "SELECT count(*) AS n FROM users"}),
    )
    assert malformed[0] and 'syntax error at or near "SELEC"' in malformed[1]
    assert insert[0] and "read-only transaction" in insert[1]
    assert two[0] and "multiple commands" in two[1]
    assert slow[0] and "statement timeout" in slow[1]
    assert not after[0] and rows(after[1]) == [{"n": 250}]
    assert postgres.sql("SELECT count(*) FROM users").strip() == "250"


def test_a_session_switched_to_read_write_by_sql_still_cannot_write(
    pg_toolbox: Toolbox, postgres: PostgresServer
) -> None:
    switch = ("query", {"sql": "SELECT set_config('default_transaction_read_only', 'off', false)"})
    results = call(pg_toolbox.url, *[switch] * 8, ("query", {"sql": "DELETE FROM users RETURNING id"}))
    assert results[-1][0] and "refused" in results[-1][1]
    assert postgres.sql("SELECT count(*) FROM users").strip() == "250"


def test_postgres_writes_go_through_execute_sql_when_allowed(postgres: PostgresServer, binary: Path) -> None:
    postgres.sql("CREATE TABLE IF NOT EXISTS notes (body text)")
    options = ToolboxOptions(allow_writes=True)
    with Toolbox(parse_database_url(postgres.url()), options, binary=binary) as toolbox:
        written, read = call(
            toolbox.url,
            ("execute_sql", {"sql": "INSERT INTO notes (body) VALUES ('hello')"}),
            ("query", {"sql": "SELECT body FROM notes"}),
        )
    assert not written[0], written[1]
    assert rows(read[1]) == [{"body": "hello"}]


def test_the_password_stays_out_of_results_errors_and_the_log(postgres: PostgresServer, binary: Path) -> None:
    database = parse_database_url(postgres.url())
    with Toolbox(database, ToolboxOptions(statement_timeout_s=1), binary=binary) as toolbox:
        results = call(
            toolbox.url,
            ("query", {"sql": "SELECT current_setting('application_name') AS a, current_user AS u"}),
            ("query", {"sql": "SELECT * FROM pg_authid"}),
            ("query", {"sql": "nonsense"}),
        )
        log = toolbox.log()
        config = toolbox.rendered.text
    assert log and "POST /mcp" in log
    for text in [config, log, *(text for _, text in results)]:
        assert PASSWORD not in text and "s3cr" not in text
    with pytest.raises(ToolboxError) as caught:
        Toolbox(parse_database_url(postgres.url(password="wrong-" + PASSWORD)), binary=binary).start()
    assert "password authentication failed" in str(caught.value)
    assert "s3cr" not in str(caught.value)


# --- SQLite ----------------------------------------------------------------------------------------


@pytest.fixture
def sqlite_toolbox(sqlite_db: Path, binary: Path) -> Iterator[Toolbox]:
    with Toolbox(parse_database_url(f"sqlite:///{sqlite_db}"), binary=binary) as toolbox:
        yield toolbox


def test_sqlite_tables_are_listed_described_and_queried(sqlite_toolbox: Toolbox) -> None:
    listed, described, queried, malformed = call(
        sqlite_toolbox.url,
        ("list_tables", {}),
        ("describe_table", {"table": "users"}),
        ("query", {"sql": "SELECT count(*) AS n FROM users"}),
        ("query", {"sql": "SELEC name FROM users"}),
    )
    assert rows(listed[1]) == [{"name": "users", "type": "table"}]
    assert [c["column_name"] for c in rows(described[1])] == ["id", "name"]
    assert rows(queried[1]) == [{"n": 250}]
    assert malformed[0] and "syntax error" in malformed[1]


def test_sqlite_refuses_writes_even_through_attach(sqlite_toolbox: Toolbox, sqlite_db: Path) -> None:
    other = sqlite_db.parent / "planted.db"
    uri = sqlite_db.as_uri() + "?mode=rw"
    results = call(
        sqlite_toolbox.url,
        ("query", {"sql": "INSERT INTO users (name) VALUES ('x')"}),
        ("query", {"sql": f"SELECT 1) SELECT 1; ATTACH '{uri}' AS w; DELETE FROM w.users; WITH z AS (SELECT 1"}),
        ("query", {"sql": f"SELECT 1) SELECT 1; ATTACH '{other}' AS p; CREATE TABLE p.t (a); WITH z AS (SELECT 1"}),
        ("query", {"sql": "SELECT count(*) AS n FROM users"}),
    )
    assert all(is_error for is_error, _ in results[:3]), results
    assert rows(results[3][1]) == [{"n": 250}]
    assert not other.exists()
    with sqlite3.connect(sqlite_db) as db:
        assert db.execute("SELECT count(*) FROM users").fetchone() == (250,)


def test_a_sqlite_query_that_runs_too_long_times_out_and_the_server_keeps_serving(sqlite_toolbox: Toolbox) -> None:
    endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"
    [(is_error, text)] = call(sqlite_toolbox.url, ("query", {"sql": endless}), timeout_s=2)
    assert is_error and "timed out" in text
    deadline = time.monotonic() + 30
    while True:
        [(is_error, text)] = call(sqlite_toolbox.url, ("list_tables", {}), timeout_s=5)
        if not is_error or time.monotonic() > deadline:
            break
    assert not is_error and "users" in text


# --- the command ----------------------------------------------------------------------------------


def test_the_command_serves_a_database_until_it_is_stopped(sqlite_db: Path, binary: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "agentfleet.mcp_servers.toolbox", "--database-url", str(sqlite_db)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.Popen([*argv, "--port", str(port), "--binary", str(binary)], env=env, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code < 500:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        [(is_error, text)] = call(url, ("list_tables", {}))
        assert not is_error and "users" in text
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=1)


def test_the_command_serves_the_toolbox_over_stdio(sqlite_db: Path, binary: Path) -> None:
    from mcp import StdioServerParameters

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "agentfleet.mcp_servers.toolbox", "--database-url", str(sqlite_db), "--transport", "stdio"],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )

    async def run() -> str:
        async with Client(params) as client:
            result = await client.call_tool("query", {"sql": "SELECT name FROM users WHERE id = 2"})
            return "\n".join(getattr(item, "text", "") for item in result.content)

    assert rows(anyio.run(run)) == [{"name": "user2"}]
