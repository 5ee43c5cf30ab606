"""The machine side of the Cloud Run Jobs fake: each Cloud Run task of an execution is a local process.

A task runs its argv in a session of its own (its own process group), with stdout and stderr
appended to a log file. Like the platform, a task that exits non-zero is retried up to
`max_retries` times (CLOUD_RUN_TASK_ATTEMPT counts the attempts); an attempt that outlives the
timeout is stopped and counts as failed; a cancelled task is stopped and counts as cancelled.
Stopping is SIGTERM to the group and SIGKILL after the grace period. When the main process of an
attempt exits, whatever is left of its group is killed, as when a container stops.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

POLL_S = 0.05
START_FAILED = 127
"""The exit code of an attempt whose process could not be started (a shell's "command not found")."""

TaskState = Literal["pending", "running", "succeeded", "failed", "cancelled"]


@dataclass(frozen=True)
class TaskSpec:
    """What one Cloud Run task runs."""

    index: int
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    timeout_s: float | None
    max_retries: int


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class TaskRun:
    """One task: its attempts, one process at a time, on a thread of its own."""

    def __init__(self, spec: TaskSpec, grace_s: float, cancelled: threading.Event) -> None:
        self.spec = spec
        self.grace_s = grace_s
        self._cancelled = cancelled
        self.state: TaskState = "pending"
        self.exit_code: int | None = None
        self.timed_out = False
        self.retries = 0
        self.pid: int | None = None

    def run(self) -> None:
        for attempt in range(self.spec.max_retries + 1):
            if self._cancelled.is_set():
                break
            self.retries = attempt
            code, stopped_by = self._attempt(attempt)
            self.exit_code, self.timed_out = code, stopped_by == "timeout"
            if stopped_by == "cancel":
                break
            if code == 0:
                self.state = "succeeded"
                return
        self.state = "cancelled" if self._cancelled.is_set() else "failed"

    def kill(self) -> None:
        """SIGKILL the running attempt's group now (the fake is stopping)."""
        self.grace_s = 0.0
        if self.pid is not None:
            _kill_group(self.pid, signal.SIGKILL)

    def _attempt(self, attempt: int) -> tuple[int, str | None]:
        env = {**self.spec.env, "CLOUD_RUN_TASK_ATTEMPT": str(attempt)}
        try:
            with self.spec.log_path.open("ab") as log:
                proc = subprocess.Popen(
                    self.spec.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        except OSError as exc:
            with self.spec.log_path.open("a") as log:
                log.write(f"fake Cloud Run: cannot start {self.spec.argv[:1]}: {exc}\n")
            return START_FAILED, None
        self.pid, self.state = proc.pid, "running"
        try:
            return self._wait(proc)
        finally:
            _kill_group(proc.pid, signal.SIGKILL)  # what is left of the "container"
            self.pid = None

    def _wait(self, proc: subprocess.Popen[bytes]) -> tuple[int, str | None]:
        """The exit code, and what stopped the process when it did not exit by itself."""
        timeout_s = self.spec.timeout_s
        deadline = None if not timeout_s else time.monotonic() + timeout_s
        while True:
            try:
                return proc.wait(timeout=POLL_S), None
            except subprocess.TimeoutExpired:
                pass
            if self._cancelled.is_set():
                return self._stop(proc), "cancel"
            if deadline is not None and time.monotonic() >= deadline:
                return self._stop(proc), "timeout"

    def _stop(self, proc: subprocess.Popen[bytes]) -> int:
        _kill_group(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(timeout=self.grace_s)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid, signal.SIGKILL)
            return proc.wait()


class ExecutionRun:
    """The tasks of one execution, all started at once (parallelism is not modelled)."""

    def __init__(self, specs: list[TaskSpec], grace_s: float) -> None:
        self.cancelled = threading.Event()
        self.tasks = [TaskRun(spec, grace_s, self.cancelled) for spec in specs]
        self.started_at: datetime | None = None
        self.finished_at: datetime | None = None
        self._finished = threading.Event()
        self._lock = threading.Lock()
        self._left = len(self.tasks)
        self._threads: list[threading.Thread] = []

    def start(self, name: str) -> None:
        for spec in self.tasks:
            spec.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = datetime.now(UTC)
        for task in self.tasks:
            thread = threading.Thread(target=self._run, args=(task,), name=f"{name}-task{task.spec.index}", daemon=True)
            self._threads.append(thread)
            thread.start()
        if not self.tasks:
            self._finish()

    def _run(self, task: TaskRun) -> None:
        try:
            task.run()
        except BaseException:
            task.state = "failed"
            raise
        finally:
            with self._lock:
                self._left -= 1
                last = self._left == 0
            if last:
                self._finish()

    def _finish(self) -> None:
        self.finished_at = datetime.now(UTC)
        self._finished.set()

    @property
    def done(self) -> bool:
        return self._finished.is_set()

    def wait(self, timeout_s: float | None) -> bool:
        return self._finished.wait(timeout_s)

    def cancel(self) -> None:
        """Stop every task (SIGTERM, SIGKILL after the grace period); they end cancelled."""
        self.cancelled.set()

    def kill(self, join_s: float = 5.0) -> None:
        """Stop every task now, with SIGKILL, and wait for the task threads to see it."""
        self.cancelled.set()
        for task in self.tasks:
            task.kill()
        for thread in self._threads:
            thread.join(join_s)

    def counts(self) -> dict[TaskState, int]:
        counts: dict[TaskState, int] = {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
        for task in self.tasks:
            counts[task.state] += 1
        return counts

    def first_failure(self) -> TaskRun | None:
        return next((task for task in self.tasks if task.state == "failed"), None)
