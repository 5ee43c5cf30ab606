#!/bin/sh
# Serve one of agentfleet's MCP servers (agentfleet.mcp_servers.NAME) over streamable HTTP.
#
#   serve.sh NAME [ARGS...]     e.g.  serve.sh workspace --root /workspace
#
# Binds $HOST:$PORT (0.0.0.0:8080 in the container; Cloud Run sets PORT); the endpoint is /mcp.
# ARGS go to the server (each server's own options: `python -m agentfleet.mcp_servers.NAME --help`).
set -eu

if [ $# -lt 1 ]; then
  echo "usage: $0 NAME [ARGS...]   (NAME: a module of agentfleet.mcp_servers, e.g. workspace)" >&2
  exit 2
fi
NAME="$1"
shift
case "$NAME" in
  *[!a-z0-9_]* | "" | _*) echo "error: $NAME is not a server name (lower-case letters, digits, _)" >&2; exit 2 ;;
esac
PYTHON="${PYTHON:-python}"
if ! "$PYTHON" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('agentfleet.mcp_servers.$NAME') is None)"; then
  echo "error: no MCP server named $NAME (no module agentfleet.mcp_servers.$NAME)" >&2
  exit 2
fi
exec "$PYTHON" -m "agentfleet.mcp_servers.$NAME" --transport streamable-http \
  --host "${HOST:-0.0.0.0}" --port "${PORT:-8080}" "$@"
