"""The database toolbox: Google's MCP Toolbox for Databases, run for one DATABASE_URL.

AgentFleet does not reimplement it: it generates the toolbox's tools.yaml (toolbox_config.py),
starts the real binary on loopback, waits for its /mcp endpoint, and stops it.

    python -m agentfleet.mcp_servers.toolbox --database-url URL [--allow-writes] [--port P]
    python -m agentfleet.mcp_servers.toolbox --database-url URL --transport stdio
    python -m agentfleet.mcp_servers.toolbox --database-url URL --print-config   # tools.yaml, no secrets

DATABASE_URL (the environment) is the default for --database-url.

The binary is Google's, installed from npm by `make toolbox` (mcp_servers/toolbox/package.json,
pinned in its package-lock.json). It is started with the generated tools.yaml in a private
directory, its credentials in its environment only, bound to 127.0.0.1 with the allowed hosts and
origins narrowed to its own address; `start` returns once its /mcp endpoint answers.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from agentfleet.errors import AgentFleetError
from agentfleet.mcp_servers.toolbox_config import (
    PASSWORD_VAR,
    Database,
    Postgres,
    Rendered,
    ToolboxOptions,
    parse_database_url,
    render,
)
from agentfleet.net import free_port

PACKAGE_DIR = Path(__file__).resolve().parents[3] / "mcp_servers" / "toolbox"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
LOG_TAIL_CHARS = 2000
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 0,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "agentfleet", "version": "0"},
    },
}


class ToolboxError(AgentFleetError, RuntimeError):
    """The toolbox cannot be found or started; the message says what to fix (and holds no credential)."""


def default_binary() -> Path | None:
    """The toolbox that `make toolbox` installed (its platform package's binary), else one on PATH."""
    arch = {"x86_64": "x64", "amd64": "x64", "aarch64": "arm64", "arm64": "arm64"}.get(platform.machine().lower())
    system = {"Linux": "linux", "Darwin": "darwin"}.get(platform.system())
    if arch and system:
        candidate = PACKAGE_DIR / "node_modules" / "@toolbox-sdk" / f"server-{system}-{arch}" / "bin" / "toolbox"
        if candidate.is_file():
            return candidate
    found = shutil.which("toolbox")
    return Path(found) if found else None


def require_binary(binary: Path | None = None) -> Path:
    found = binary or default_binary()
    if found is None or not found.is_file():
        raise ToolboxError(
            "the MCP Toolbox binary is not installed: run `make toolbox` (npm install in mcp_servers/toolbox) "
            "or pass its path"
        )
    return found


def read_only_view(argv: list[str]) -> list[str]:
    """argv run by bubblewrap in a read-only view of the whole filesystem (network shared)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise ToolboxError(
            "a read-only SQLite database needs bubblewrap (`apt-get install bubblewrap`): SQL can ATTACH "
            "and write other files; install it, or allow writes explicitly"
        )
    return [
        bwrap,
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-pid",
        "--die-with-parent",
        "--",
        *argv,
    ]


class Toolbox:
    """One toolbox process serving one database on 127.0.0.1; a context manager."""

    def __init__(
        self,
        database: Database,
        options: ToolboxOptions | None = None,
        *,
        binary: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.rendered: Rendered = render(database, options or ToolboxOptions())
        self.binary = require_binary(binary)
        self.port = port or free_port()
        password = database.password.get_secret_value() if isinstance(database, Postgres) else ""
        escaped = self.rendered.env[PASSWORD_VAR].get_secret_value() if password else ""
        self._secrets = sorted({secret for secret in (password, escaped) if secret}, key=len, reverse=True)
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def argv(self, config: Path) -> list[str]:
        own = f"127.0.0.1:{self.port}"
        argv = [str(self.binary), "--config", str(config), "--address", "127.0.0.1", "--port", str(self.port)]
        argv += ["--disable-version-check", "--disable-reload", "--logging-format", "JSON"]
        argv += ["--allowed-hosts", f"{own},localhost:{self.port}", "--allowed-origins", f"http://{own}"]
        return read_only_view(argv) if self.rendered.read_only_files else argv

    def start(self) -> str:
        self._dir = Path(tempfile.mkdtemp(prefix="agentfleet-toolbox-"))
        config = self._dir / "tools.yaml"
        config.write_text(self.rendered.text)
        config.chmod(0o600)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self._dir)}
        env.update({name: value.get_secret_value() for name, value in self.rendered.env.items()})
        with (self._dir / "toolbox.log").open("wb") as log:
            self._proc = subprocess.Popen(
                self.argv(config), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    raise ToolboxError(f"the toolbox exited with status {self._proc.returncode}: {self.log_tail()}")
                try:
                    headers = {"accept": "application/json, text/event-stream"}
                    if client.post(self.url, json=INITIALIZE, headers=headers).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        raise ToolboxError(
            f"the toolbox did not answer on {self.url} within {START_TIMEOUT_S:.0f} s: {self.log_tail()}"
        )

    def log(self) -> str:
        """The toolbox's own log, with any credential replaced by ***."""
        path = self._dir / "toolbox.log" if self._dir else None
        text = path.read_text(errors="replace") if path and path.is_file() else ""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL_CHARS:].strip() or "(no output)"

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> Toolbox:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m agentfleet.mcp_servers.toolbox", description="Run the database toolbox for one database."
    )
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
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SystemExit: the with block stops the toolbox
        with toolbox:
            print(f"toolbox serving {toolbox.url}", file=sys.stderr, flush=True)
            signal.pause()
    except (AgentFleetError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def run_stdio(toolbox: Toolbox) -> int:
    """The toolbox's own stdio transport, on this process's stdin and stdout."""
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
