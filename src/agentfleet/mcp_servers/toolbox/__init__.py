"""The database toolbox: Google's MCP Toolbox for Databases, configured from a DATABASE_URL.

AgentFleet does not reimplement it: it generates the toolbox's tools.yaml (config.py), starts the
real binary on loopback and stops it (process.py); `python -m agentfleet.mcp_servers.toolbox` runs it.
"""

from agentfleet.mcp_servers.toolbox.config import (
    Database,
    Postgres,
    Rendered,
    Sqlite,
    ToolboxOptions,
    parse_database_url,
    render,
)
from agentfleet.mcp_servers.toolbox.process import Toolbox, ToolboxError, default_binary

__all__ = [
    "Database",
    "Postgres",
    "Rendered",
    "Sqlite",
    "Toolbox",
    "ToolboxError",
    "ToolboxOptions",
    "default_binary",
    "parse_database_url",
    "render",
]
