"""The toolbox's `tools.yaml`, generated from a DATABASE_URL.

The file holds no credential: the user name and password are `${VAR}` references that the toolbox
fills from its environment (`Rendered.env`), so the file can be shown, logged or stored as is.
Each document is written as JSON, which is YAML too (no YAML library needed).

Read-only by default, in layers:
- PostgreSQL: every connection starts with `default_transaction_read_only=on`; the `query` tool
  runs the SQL as a CTE of a statement whose one-time filter fails unless the transaction is read
  only, so a call that turned the session read-write (`set_config(...)`) is refused and rolled
  back; one statement per call (the extended protocol refuses several); `statement_timeout`.
- SQLite: the file is opened `mode=ro` and the toolbox runs in a read-only view of the filesystem
  (see toolbox.py), because SQLite runs several statements per call and `ATTACH` could open any
  file read-write.
- No write tool exists unless writes are allowed; then `execute_sql` runs any statement.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from agentfleet.errors import ConfigError
from agentfleet.names import redact_url

USER_VAR = "AGENTFLEET_TOOLBOX_DB_USER"
PASSWORD_VAR = "AGENTFLEET_TOOLBOX_DB_PASSWORD"
SOURCE = "db"
WRITE_SOURCE = "db-write"
# Connection parameters AgentFleet sets itself; a DATABASE_URL may not override them.
ENFORCED_PARAMS = {"default_transaction_read_only", "statement_timeout", "options"}


class ToolboxOptions(BaseModel):
    """What the generated tools may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allow_writes: bool = False
    """Add `execute_sql` (any statement, read-write). Off: only reads are possible."""
    row_limit: Annotated[int, Field(ge=1, le=100_000)] = 100
    """The most rows `query` returns."""
    statement_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """PostgreSQL cancels a statement that runs longer (SQLite has no statement timeout)."""


class Postgres(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["postgres"] = "postgres"
    host: str
    port: int = 5432
    database: str
    user: str
    password: SecretStr
    params: dict[str, str] = {}


class Sqlite(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["sqlite"] = "sqlite"
    path: Path


Database = Postgres | Sqlite


class Rendered(BaseModel):
    """A tools.yaml and the environment its `${VAR}`s need."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str
    env: dict[str, SecretStr]
    read_only_files: bool
    """SQLite read-only: the toolbox must run in a read-only view of the filesystem."""


def parse_database_url(url: str) -> Database:
    """`postgresql://user:pass@host:port/db?sslmode=...`, or a SQLite file: `sqlite:///rel.db`,
    `sqlite:////abs.db` or a plain path. Errors name the URL without its credentials."""
    url = url.strip()
    if not url:
        raise ConfigError("DATABASE_URL is empty: give postgresql://USER:PASSWORD@HOST:PORT/DB or a SQLite file path")
    scheme = url.split("://", 1)[0].split("+", 1)[0].lower() if "://" in url else ""
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    if scheme == "sqlite":
        return _sqlite(Path(unquote(urlsplit(url).path).removeprefix("/")))
    if not scheme:
        return _sqlite(Path(url).expanduser())
    raise ConfigError(
        f"DATABASE_URL {redact_url(url)}: unsupported scheme {scheme!r}; use postgresql://... or a SQLite file path"
    )


def _postgres(url: str) -> Postgres:
    parts = urlsplit(url)
    shown = redact_url(url)
    try:
        port = parts.port or 5432
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL {shown}: the port is not a number") from exc
    database = unquote(parts.path.lstrip("/"))
    if not parts.hostname or not database or not parts.username:
        raise ConfigError(f"DATABASE_URL {shown}: give postgresql://USER:PASSWORD@HOST:PORT/DATABASE")
    params = dict(parse_qsl(parts.query))
    overridden = sorted(ENFORCED_PARAMS & params.keys())
    if overridden:
        raise ConfigError(f"DATABASE_URL {shown}: remove {', '.join(overridden)}; the toolbox options set them")
    return Postgres(
        host=parts.hostname,
        port=port,
        database=database,
        user=unquote(parts.username),
        password=SecretStr(unquote(parts.password or "")),
        params=params,
    )


def _sqlite(path: Path) -> Sqlite:
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"SQLite database {path} does not exist (DATABASE_URL names a file that is not there)")
    return Sqlite(path=path)


def render(database: Database, options: ToolboxOptions) -> Rendered:
    docs = _postgres_docs(database, options) if isinstance(database, Postgres) else _sqlite_docs(database, options)
    text = "\n---\n".join(json.dumps(doc, indent=1) for doc in docs) + "\n"
    env = {}
    if isinstance(database, Postgres):
        env = {
            USER_VAR: _substitutable(database.user),
            PASSWORD_VAR: _substitutable(database.password.get_secret_value()),
        }
    return Rendered(text=text, env=env, read_only_files=isinstance(database, Sqlite) and not options.allow_writes)


def _substitutable(value: str) -> SecretStr:
    """`value` as it must be in the environment: the toolbox pastes `${VAR}` into the file's text
    before parsing it, so the value is escaped for the JSON string it lands in (`$` too, so that
    nothing in it is read as another `${VAR}`)."""
    return SecretStr(json.dumps(value)[1:-1].replace("$", "\\u0024"))


def _tool(name: str, type_: str, description: str, source: str = SOURCE, **rest: Any) -> dict[str, Any]:
    return {"kind": "tool", "name": name, "type": type_, "source": source, "description": description, **rest}


QUERY_DESCRIPTION = (
    "Run one read-only SQL query (SELECT, WITH ... SELECT, VALUES) and get at most {limit} rows as JSON. "
    "Writes are refused. Use list_tables and describe_table to learn the schema first."
)
SQL_PARAMETER = [{"name": "sql", "type": "string", "description": "One SQL query, without a trailing semicolon."}]
TABLE_PARAMETER = [{"name": "table", "type": "string", "description": "The table's name (schema.table or table)."}]

# The SQL goes on lines of its own: a trailing `--` comment cannot swallow the limit or the check.
# The check's error is not a constant (the planner would fold it and fail every query).
POSTGRES_QUERY = """WITH q AS (
{{{{.sql}}}}
)
SELECT * FROM q
WHERE (CASE WHEN pg_catalog.current_setting('transaction_read_only') = 'on' THEN 1
       ELSE CAST('refused, nothing ran: this session left read-only mode (transaction_read_only='
                 || pg_catalog.current_setting('transaction_read_only') || '); restart the toolbox' AS integer) END) = 1
LIMIT {limit}"""

POSTGRES_DESCRIBE = """SELECT c.table_schema, c.table_name, c.column_name, c.data_type, c.is_nullable, c.column_default
FROM information_schema.columns AS c
WHERE (c.table_schema || '.' || c.table_name = $1)
   OR (c.table_name = $1 AND c.table_schema = ANY (pg_catalog.current_schemas(false)))
ORDER BY c.table_schema, c.ordinal_position"""


def _postgres_docs(db: Postgres, options: ToolboxOptions) -> list[dict[str, Any]]:
    timeout_ms = str(int(options.statement_timeout_s * 1000))
    base = {
        "kind": "source",
        "type": "postgres",
        "host": db.host,
        "port": str(db.port),
        "database": db.database,
        "user": "${" + USER_VAR + "}",
        "password": "${" + PASSWORD_VAR + "}",
    }
    read_params = {**db.params, "default_transaction_read_only": "on", "statement_timeout": timeout_ms}
    docs: list[dict[str, Any]] = [{**base, "name": SOURCE, "queryParams": read_params}]
    docs.append(
        _tool(
            "list_tables",
            "postgres-list-tables",
            "List the tables in the user schemas; output_format 'simple' gives names only, 'detailed' columns, "
            "constraints and indexes; table_names narrows to a comma-separated list.",
        )
    )
    docs.append(
        _tool(
            "describe_table",
            "postgres-sql",
            "Describe one table: its columns, types, nullability and defaults.",
            statement=POSTGRES_DESCRIBE,
            parameters=TABLE_PARAMETER,
        )
    )
    docs.append(
        _tool(
            "query",
            "postgres-sql",
            QUERY_DESCRIPTION.format(limit=options.row_limit),
            statement=POSTGRES_QUERY.format(limit=options.row_limit),
            templateParameters=SQL_PARAMETER,
        )
    )
    if options.allow_writes:
        docs.insert(1, {**base, "name": WRITE_SOURCE, "queryParams": {**db.params, "statement_timeout": timeout_ms}})
        docs.append(_write_tool("postgres-execute-sql"))
    return docs


def _write_tool(type_: str) -> dict[str, Any]:
    return _tool(
        "execute_sql",
        type_,
        "Run one SQL statement that may change the database (INSERT, UPDATE, DELETE, DDL); returns its rows if any.",
        source=WRITE_SOURCE,
    )


SQLITE_LIST = (
    "SELECT name, type FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name"
)
SQLITE_DESCRIBE = (
    'SELECT name AS column_name, type AS data_type, "notnull" AS not_null, dflt_value AS column_default, '
    "pk AS primary_key_position FROM pragma_table_info(?) ORDER BY cid"
)
SQLITE_QUERY = "WITH q AS (\n{{{{.sql}}}}\n)\nSELECT * FROM q\nLIMIT {limit}"


def _sqlite_docs(db: Sqlite, options: ToolboxOptions) -> list[dict[str, Any]]:
    # The path travels as a file: URI: `mode=ro` makes SQLite refuse writes to it.
    uri = db.path.as_uri().replace("file:///", "file:/", 1)
    docs: list[dict[str, Any]] = [
        {"kind": "source", "name": SOURCE, "type": "sqlite", "database": uri + "?mode=ro"},
        _tool("list_tables", "sqlite-sql", "List the tables and views.", statement=SQLITE_LIST),
        _tool(
            "describe_table",
            "sqlite-sql",
            "Describe one table: its columns, types, NOT NULL, defaults and primary key.",
            statement=SQLITE_DESCRIBE,
            parameters=TABLE_PARAMETER,
        ),
        _tool(
            "query",
            "sqlite-sql",
            QUERY_DESCRIPTION.format(limit=options.row_limit),
            statement=SQLITE_QUERY.format(limit=options.row_limit),
            templateParameters=SQL_PARAMETER,
        ),
    ]
    if options.allow_writes:
        docs.insert(1, {"kind": "source", "name": WRITE_SOURCE, "type": "sqlite", "database": str(db.path)})
        docs.append(_write_tool("sqlite-execute-sql"))
    return docs
