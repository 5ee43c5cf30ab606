"""The warm agent launcher, host side: one process that has imported the agent once forks each agent.

Starting `python -m agentfleet.agent` costs an interpreter and its imports (the model client, the
MCP stack, pydantic models: about a second of CPU) before the first model request; `agentfleet
serve` would pay that for every task. Instead `LocalJobRunner` starts `python -m
agentfleet.agent.warm` once (that module is the process side and its protocol) and asks it to fork
each attempt's agent. `launch` raises OSError when it cannot; the runner then starts the agent
directly, as with AGENTFLEET_AGENT_PREFORK=false.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger("agentfleet.local.warm")


_HAS_PROC = Path("/proc/self/stat").exists()


def proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of the process, or None when there is none. The start time is field 22
    of /proc/<pid>/stat; without /proc (macOS) it is "" and liveness falls back to kill(pid, 0)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except ProcessLookupError:  # it vanished between the open and the read: the kernel says ESRCH
        return None
    except FileNotFoundError:
        if _HAS_PROC:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return ("R", "")
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) ": field 3 onward
    return fields[0], fields[19]


def start_time(pid: int) -> str | None:
    """The process's start time (see `proc_stat`), or None when there is no such process."""
    stat = proc_stat(pid)
    return stat[1] if stat else None


class WarmChild:
    """An agent the warm launcher forked: its pid, its start time, and `wait` for its exit code."""

    def __init__(self, pid: int, start: str | None) -> None:
        self.pid, self.start = pid, start
        self._code: int | None = None
        self._ended = threading.Event()
        self._orphaned = False

    def _exited(self, code: int) -> None:
        self._code = code
        self._ended.set()

    def _orphan(self) -> None:
        """The launcher process ended first: the child was handed to init, its code is lost."""
        self._orphaned = True
        self._ended.set()

    def wait(self) -> int:
        """Its exit code, once it has ended; -1 when the launcher went away and the code with it."""
        self._ended.wait()
        if self._code is not None:
            return self._code
        while start_time(self.pid) == self.start and self.start is not None:
            time.sleep(0.1)
        return -1


class WarmLauncher:
    """The host side: starts `python -m agentfleet.local.warm` at the first launch, with `env` (the
    agents' base environment), and asks it to fork each agent. `launch` raises OSError when it
    cannot (the launcher process would not start, or died): the caller then starts the agent
    directly."""

    START_S = 60.0
    ANSWER_S = 10.0

    def __init__(self, env: Mapping[str, str], cwd: Path) -> None:
        self.env, self.cwd = dict(env), cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._children: dict[int, WarmChild] = {}
        self._lock = threading.Lock()

    def launch(self, args: list[str], env: Mapping[str, str], cwd: Path, log: Path) -> WarmChild:
        """Fork an agent that runs `python -m agentfleet.agent ARGS` would, with `env`, in `cwd`,
        writing to `log`."""
        with self._lock:
            proc = self._running()
            request = {"args": args, "env": dict(env), "cwd": str(cwd), "log": str(log)}
            try:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps(request).encode() + b"\n")
                proc.stdin.flush()
                answer = self._answers.get(timeout=self.ANSWER_S)
            except (OSError, queue.Empty) as exc:
                self._stop(proc)
                raise OSError(f"the warm launcher did not answer: {exc!r}") from None
            if "error" in answer:
                raise OSError(f"the warm launcher could not start the agent: {answer['error']}")
            child: WarmChild = answer["child"]
            return child

    def close(self) -> None:
        """Stop the launcher process (the agents it started run on)."""
        with self._lock:
            if self._proc is not None:
                self._stop(self._proc)

    def _running(self) -> subprocess.Popen[bytes]:
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        self._answers = queue.Queue()
        proc = subprocess.Popen(
            [sys.executable, "-m", "agentfleet.agent.warm"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C on the server does not reach it; it ends with its stdin
        )
        threading.Thread(target=self._read, args=(proc, self._answers), name="warm-launcher", daemon=True).start()
        try:
            ready = self._answers.get(timeout=self.START_S)
        except queue.Empty:
            self._stop(proc)
            raise OSError(f"the warm launcher did not start within {self.START_S:g} s") from None
        if "ready" not in ready:
            self._stop(proc)
            raise OSError(f"the warm launcher could not start: {ready}")
        self._proc = proc
        logger.info("warm agent launcher started (pid %s)", proc.pid)
        return proc

    def _read(self, proc: subprocess.Popen[bytes], answers: queue.Queue[dict[str, Any]]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if "exit" in message:
                child = self._children.pop(message["exit"], None)
                if child is not None:
                    child._exited(message["code"])
            elif "pid" in message:  # registered here, before its exit can be read
                child = WarmChild(message["pid"], message["start"])
                self._children[child.pid] = child
                answers.put({"child": child})
            else:
                answers.put(message)
        proc.wait()
        answers.put({"error": f"the warm launcher exited ({proc.returncode})"})
        for child in list(self._children.values()):
            child._orphan()
        self._children.clear()

    def _stop(self, proc: subprocess.Popen[bytes]) -> None:
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if self._proc is proc:
            self._proc = None
