"""A throwaway PostgreSQL 15 server on 127.0.0.1 for tests and benchmarks (Debian's `postgresql`).

initdb and the server run as an unprivileged user when this process is root (PostgreSQL refuses to
run as root): uid/gid 65534 through `setpriv`, in a directory that user owns.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from agentfleet.net import free_port

BIN = Path("/usr/lib/postgresql/15/bin")
UNPRIVILEGED = (65534, 65534)


def postgres_available() -> str | None:
    """None when a server can be started here, else why not (and how to install it)."""
    if not (BIN / "initdb").is_file() or not (BIN / "pg_ctl").is_file():
        return f"PostgreSQL 15 is not installed ({BIN}/initdb): `apt-get install postgresql` (make system-deps)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing: PostgreSQL must drop root to run"
    return None


class PostgresServer:
    """`start()` → a running server with user `agent` (a random password) and database `app`."""

    def __init__(self, password: str | None = None) -> None:
        self.password = password or secrets.token_urlsafe(16)
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="agentfleet-pg-"))
        self.user = "agent"
        self.database = "app"

    def url(self, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return f"postgresql://{self.user}:{secret}@127.0.0.1:{self.port}/{self.database}"

    def _run(self, *argv: str, stdin: str | None = None) -> str:
        drop: list[str] = []
        if os.geteuid() == 0:
            uid, gid = UNPRIVILEGED
            drop = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.dir), "LC_ALL": "C.UTF-8", "PGPASSWORD": self.password}
        proc = subprocess.run(
            [*drop, *argv], input=stdin, capture_output=True, text=True, env=env, cwd=self.dir, timeout=120
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{Path(argv[0]).name} failed: {proc.stderr[-2000:]}")
        return proc.stdout

    def start(self) -> PostgresServer:
        pwfile = self.dir / "pw"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            for path in (self.dir, pwfile):
                os.chown(path, *UNPRIVILEGED)
        data = str(self.dir / "data")
        self._run(
            str(BIN / "initdb"), "-D", data, "-U", self.user, f"--pwfile={pwfile}", "-A", "scram-sha-256", "--no-sync"
        )
        pwfile.unlink()
        options = f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off -c full_page_writes=off"
        self._run(str(BIN / "pg_ctl"), "-D", data, "-o", options, "-l", str(self.dir / "log"), "-w", "start")
        self.sql(f"CREATE DATABASE {self.database}", database="postgres")
        return self

    def sql(self, statements: str, database: str | None = None) -> str:
        """Run SQL as the owner (psql, unaligned tuples only); returns its output."""
        return self._run(
            str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
            "-d", database or self.database, "-v", "ON_ERROR_STOP=1", "-Atq", stdin=statements,
        )  # fmt: skip

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._run(str(BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.dir, ignore_errors=True)
