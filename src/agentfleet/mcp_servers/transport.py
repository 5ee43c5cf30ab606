"""The transport options every AgentFleet MCP server takes, and serving over the one chosen:
stdio (beside the agent) or streamable HTTP at `/mcp` (a shared service)."""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer


def add_transport_args(parser: argparse.ArgumentParser, port: int = 8765) -> None:
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=port)


def serve(server: MCPServer, args: argparse.Namespace) -> None:
    """Serve until the client goes (stdio) or the process is stopped (streamable HTTP)."""
    if args.transport == "stdio":
        server.run("stdio")
    else:
        server.run("streamable-http", host=args.host, port=args.port)
