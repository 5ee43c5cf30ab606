"""Run the database toolbox for one database.

    python -m agentfleet.mcp_servers.toolbox --database-url URL [--allow-writes] [--port P]
    python -m agentfleet.mcp_servers.toolbox --database-url URL --transport stdio
    python -m agentfleet.mcp_servers.toolbox --database-url URL --print-config   # tools.yaml, no secrets

DATABASE_URL (the environment) is the default for --database-url.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

from agentfleet.errors import AgentFleetError
from agentfleet.mcp_servers.toolbox.config import ToolboxOptions, parse_database_url
from agentfleet.mcp_servers.toolbox.process import Toolbox


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m agentfleet.mcp_servers.toolbox", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", ""), help="default: $DATABASE_URL")
    parser.add_argument("--allow-writes", action="store_true", help="add execute_sql (read-write)")
    parser.add_argument("--row-limit", type=int, default=ToolboxOptions().row_limit)
    parser.add_argument("--statement-timeout-s", type=float, default=ToolboxOptions().statement_timeout_s)
    parser.add_argument("--transport", choices=["streamable-http", "stdio"], default="streamable-http")
    parser.add_argument("--host", default="127.0.0.1", help="only 127.0.0.1: the toolbox serves loopback here")
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--binary", type=Path, default=None, help="the toolbox binary (default: `make toolbox`'s)")
    parser.add_argument("--print-config", action="store_true", help="print the tools.yaml and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.host != "127.0.0.1":
            raise AgentFleetError("--host: the toolbox is served on 127.0.0.1 only (Cloud Run runs Google's image)")
        database = parse_database_url(args.database_url)
        options = ToolboxOptions(
            allow_writes=args.allow_writes, row_limit=args.row_limit, statement_timeout_s=args.statement_timeout_s
        )
        toolbox = Toolbox(database, options, binary=args.binary, port=args.port or None)
        if args.print_config:
            sys.stdout.write(toolbox.rendered.text)
            return 0
        if args.transport == "stdio":
            return run_stdio(toolbox)
        with toolbox:
            print(f"toolbox serving {toolbox.url}", file=sys.stderr, flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            signal.pause()
    except (AgentFleetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def run_stdio(toolbox: Toolbox) -> int:
    """The toolbox's own stdio transport, on this process's stdin and stdout."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="agentfleet-toolbox-") as tmp:
        config = Path(tmp) / "tools.yaml"
        config.write_text(toolbox.rendered.text)
        config.chmod(0o600)
        argv = [a for a in toolbox.argv(config) if a not in ("--logging-format", "JSON")] + ["--stdio"]
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp}
        env.update({name: value.get_secret_value() for name, value in toolbox.rendered.env.items()})
        return subprocess.call(argv, env=env, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    sys.exit(main())
