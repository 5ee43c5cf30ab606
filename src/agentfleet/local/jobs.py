"""JobRunner on local processes: one process per attempt of a task, the local Cloud Run Job execution.

Each execution is a row of the `executions` table (SQLite, WAL, a kept-open connection per
thread: sqlite.ThreadConnections), inserted before its process is started; UNIQUE (task_id,
attempt) makes a second launch of the same attempt, from any thread or process, return the
recorded execution and start nothing. The row keeps the process id and
its start time (field 22 of /proc/<pid>/stat), so liveness survives a restart of the runner and
of its process, and a reused pid is not taken for the agent.

The agent runs in its own session (`start_new_session=True`): Ctrl-C on the server does not
reach it, and it stays resumable. `cancel` signals its whole process group.

One unit, over ~300 lines: the local JobRunner and the /proc liveness checks only it needs.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from agentfleet.local import sqlite
from agentfleet.local.warm import WarmChild, WarmLauncher, proc_stat
from agentfleet.ports import ATTEMPT_ENV, TASK_ID_ENV, Execution
from agentfleet.settings import Settings
from agentfleet.tasks import Task

logger = logging.getLogger("agentfleet.local.jobs")

LAUNCH_STALE_S = 60.0
"""A row still without a pid after this long: its launcher died before starting the process."""
POLL_S = 0.05

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    name TEXT PRIMARY KEY,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    workspace_id TEXT NOT NULL,
    state TEXT NOT NULL,
    pid INTEGER,
    pid_start TEXT,
    exit_code INTEGER,
    started_at REAL NOT NULL,
    log_path TEXT NOT NULL,
    UNIQUE (task_id, attempt)
);
"""


class Child(Protocol):
    """A started agent process: a Popen, or one the warm launcher forked."""

    pid: int

    def wait(self) -> int: ...


_children: dict[int, Child] = {}
"""Processes this process started, by pid, until their watcher thread has reaped them."""
_children_lock = threading.Lock()


PASSED_ENV = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "PYTHONPATH",
        "VIRTUAL_ENV",
        "PYTHONUNBUFFERED",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "SSH_AUTH_SOCK",
        "GIT_SSH_COMMAND",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GOOGLE_CLOUD_PROJECT",
        "CLOUDSDK_CONFIG",
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
    }
)
"""What an agent takes of its launcher's environment: how to run programs and reach the network."""
PASSED_ENV_SUFFIXES = ("_EMULATOR_HOST",)
PASSED_ENV_PREFIXES = ("LC_",)


def agent_environment(settings: Settings, base: Mapping[str, str]) -> dict[str, str]:
    """The environment of an agent process: an allow-list of `base` (no tokens, no keys, nothing
    else of the server's) and the launcher's settings written out, the API token left out."""
    env = {
        key: value
        for key, value in base.items()
        if key in PASSED_ENV or key.endswith(PASSED_ENV_SUFFIXES) or key.startswith(PASSED_ENV_PREFIXES)
    }
    env.update(settings.environment(exclude=("api_token",)))
    return env


def execution_name(task: Task) -> str:
    return f"agent-{task.workspace_id}-{task.id}-{task.attempt}"


def _watched(pid: int) -> bool:
    with _children_lock:
        return pid in _children


def _is_alive(pid: int, start: str | None) -> bool:
    """The process `pid` started at `start` exists and is not a zombie (a zombie is reaped
    here when it is a child of this process that no watcher thread waits for)."""
    stat = proc_stat(pid)
    if stat is None or stat[1] != start:
        return False
    if stat[0] in ("Z", "X"):
        if not _watched(pid):
            with suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
        return False
    return True


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _execution(row: sqlite3.Row) -> Execution:
    return Execution(
        name=row["name"],
        task_id=row["task_id"],
        attempt=row["attempt"],
        workspace_id=row["workspace_id"],
        state=row["state"],
        started_at=datetime.fromtimestamp(row["started_at"], UTC),
    )


class LocalJobRunner(sqlite.ThreadConnections):
    def __init__(
        self,
        settings: Settings,
        *,
        command: list[str] | None = None,
        db_path: Path | None = None,
        grace_s: float = 10.0,
        env: Mapping[str, str] | None = None,
        warm: bool | None = None,
    ) -> None:
        """`command`: argv of the agent, with `{task_id}`, `{attempt}`, `{workspace_id}` and
        `{execution}` replaced per launch (default: `python -m agentfleet.agent`). `env`: the base
        environment of the agent (default: this process's environment, read at each launch).
        `warm`: fork the default agent from a process that has imported it once (local/warm.py;
        default: AGENTFLEET_AGENT_PREFORK); a custom `command` always starts as itself."""
        self.settings = settings
        self.command = command
        self.db_path = db_path or settings.home / "executions.db"
        self.grace_s = grace_s
        self.env = env
        self.warm = (settings.agent_prefork if warm is None else warm) and command is None
        self._launcher: WarmLauncher | None = None
        self.exit_listeners: list[Callable[[], None]] = []
        """Called after an agent this runner started has exited and been recorded: by then it has
        handed its workspace on (published the next task), which the server's dispatcher wakes for."""
        super().__init__(self.db_path, _SCHEMA)

    # --- the port ------------------------------------------------------------------------

    def launch(self, task: Task) -> Execution:
        """Start the agent for the task's current attempt, once: a repeated launch of the same
        attempt returns the recorded execution. OSError when the process cannot be started
        (the execution is then recorded as failed)."""
        name = execution_name(task)
        log_path = self.settings.home / "logs" / f"{task.id}-{task.attempt}.log"
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT OR IGNORE INTO executions (name, task_id, attempt, workspace_id, state, started_at, log_path)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?)",
                (name, task.id, task.attempt, task.workspace_id, time.time(), str(log_path)),
            ).rowcount
            row = conn.execute(
                "SELECT * FROM executions WHERE task_id = ? AND attempt = ?", (task.id, task.attempt)
            ).fetchone()
        if inserted:
            self._start(task, name, log_path)
        return _execution(row)

    def cancel(self, execution: str) -> None:
        """Mark the execution cancelled, SIGTERM its process group, and SIGKILL the group after
        the grace period. An unknown or finished execution is left as it is."""
        with self._write() as conn:
            row = conn.execute("SELECT * FROM executions WHERE name = ?", (execution,)).fetchone()
            if row is None or row["state"] != "running":
                return
            conn.execute("UPDATE executions SET state = 'cancelled' WHERE name = ?", (execution,))
        if row["pid"] is not None:  # else the launch in flight sees the cancel and stops it
            self._terminate(row["pid"], row["pid_start"])

    def list_active(self) -> list[Execution]:
        """Executions whose process is alive, oldest first. A process found gone without a watcher
        here (its launcher restarted) is recorded as failed: its exit status is lost."""
        rows = self._conn().execute("SELECT * FROM executions WHERE state = 'running' ORDER BY started_at").fetchall()
        active, gone = [], []
        for row in rows:
            if row["pid"] is None:
                if time.time() - row["started_at"] > LAUNCH_STALE_S:
                    gone.append(row["name"])
            elif _is_alive(row["pid"], row["pid_start"]):
                active.append(_execution(row))
            elif not _watched(row["pid"]):
                gone.append(row["name"])
        if gone:
            with self._write() as conn:
                conn.executemany(
                    "UPDATE executions SET state = 'failed' WHERE name = ? AND state = 'running'",
                    [(name,) for name in gone],
                )
        return active

    def health(self) -> dict[str, Any]:
        return {"backend": "local-process", "active": len(self.list_active())}

    # --- local extras ----------------------------------------------------------------------

    def get(self, execution: str) -> Execution | None:
        """The recorded execution (its state as last recorded), or None."""
        row = self._conn().execute("SELECT * FROM executions WHERE name = ?", (execution,)).fetchone()
        return None if row is None else _execution(row)

    # --- processes -------------------------------------------------------------------------

    def _argv(self, task: Task, name: str) -> list[str]:
        if self.command is None:
            return [sys.executable, "-m", "agentfleet.agent", "--task-id", task.id, "--attempt", str(task.attempt)]
        values = {
            "task_id": task.id,
            "attempt": str(task.attempt),
            "workspace_id": task.workspace_id,
            "execution": name,
        }
        argv = []
        for part in self.command:
            for key, value in values.items():
                part = part.replace(f"{{{key}}}", value)
            argv.append(part)
        return argv

    def close(self) -> None:
        """Stop the warm launcher, if one was started (the agents it started run on), and close
        this thread's connection."""
        if self._launcher is not None:
            self._launcher.close()
        super().close()

    def _warm_start(self, task: Task, env: dict[str, str], log_path: Path) -> WarmChild | None:
        """The agent forked by the warm launcher; None when that cannot be done (it is said once)."""
        if self._launcher is None:
            base = agent_environment(self.settings, os.environ if self.env is None else self.env)
            self._launcher = WarmLauncher(base, self.settings.home)
        try:
            args = ["--task-id", task.id, "--attempt", str(task.attempt)]
            return self._launcher.launch(args, env, self.settings.home, log_path)
        except OSError as exc:
            logger.warning("starting the agent directly: %s", exc)
            self.warm = False
            return None

    def _start(self, task: Task, name: str, log_path: Path) -> None:
        env = agent_environment(self.settings, os.environ if self.env is None else self.env)
        env.update({TASK_ID_ENV: task.id, ATTEMPT_ENV: str(task.attempt)})
        argv = self._argv(task, name)
        if self.warm:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            child = self._warm_start(task, env, log_path)
            if child is not None:
                self._record(task, name, child, child.start)
                return
        try:
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with log_path.open("ab") as log:
                proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.settings.home,  # not ours: a .env here would be read again
                    start_new_session=True,
                )
        except OSError:
            # Forget the attempt's row: the redelivery that follows may then start it afresh.
            with self._write() as conn:
                conn.execute("DELETE FROM executions WHERE name = ?", (name,))
            raise
        stat = proc_stat(proc.pid)  # read before anything can reap it
        self._record(task, name, proc, stat[1] if stat else None)

    def _record(self, task: Task, name: str, proc: Child, start: str | None) -> None:
        """Remember the started process (its pid and start time), then watch it until it exits."""
        with _children_lock:
            _children[proc.pid] = proc
        with self._write() as conn:
            conn.execute("UPDATE executions SET pid = ?, pid_start = ? WHERE name = ?", (proc.pid, start, name))
            state = conn.execute("SELECT state FROM executions WHERE name = ?", (name,)).fetchone()["state"]
        threading.Thread(target=self._watch, args=(name, proc), name=f"watch-{name}", daemon=True).start()
        logger.info("started %s (pid %s)", name, proc.pid, extra={"task_id": task.id})
        if state == "cancelled":  # cancelled while it was being started
            self._terminate(proc.pid, start)

    def _watch(self, name: str, proc: Child) -> None:
        """Reap the process when it exits and record how it ended (a cancel stays a cancel)."""
        code = proc.wait()
        state = "succeeded" if code == 0 else "failed"
        try:
            with self._write() as conn:
                conn.execute(
                    "UPDATE executions SET exit_code = ?, state = CASE WHEN state = 'cancelled' THEN state ELSE ? END"
                    " WHERE name = ?",
                    (code, state, name),
                )
        except sqlite3.Error as exc:
            logger.warning("could not record the end of %s: %s", name, exc)
        finally:
            with _children_lock:
                _children.pop(proc.pid, None)
        for listener in self.exit_listeners:
            listener()

    def _terminate(self, pid: int, start: str | None) -> None:
        if not _is_alive(pid, start):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        threading.Thread(target=self._kill_after_grace, args=(pid,), name=f"kill-{pid}", daemon=True).start()

    def _kill_after_grace(self, pgid: int) -> None:
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            if not _group_exists(pgid):
                return
            time.sleep(POLL_S)
        with suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
