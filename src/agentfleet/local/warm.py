"""A warm agent launcher: one process that has imported the agent once, and forks each agent.

Starting `python -m agentfleet.agent` costs an interpreter and its imports (the model client, the
MCP stack, pydantic models: about a second of CPU) before the first model request; `agentfleet
serve` would pay that for every task. Instead `LocalJobRunner` starts this module once (`python -m
agentfleet.local.warm`); it imports what an attempt needs, then forks one child per launch. A child
is what `python -m agentfleet.agent` would have been: its own session (process group), stdin
/dev/null, stdout and stderr to the attempt's log, the environment it was given (nothing of this
process's), the attempt's argv; then it runs `agentfleet.agent.attempt.main` and exits with its code.

Protocol, JSON lines: the launcher writes `{"args": [...], "env": {...}, "cwd": "...", "log": "..."}`;
this process answers `{"pid": P, "start": S}` (S: the child's start time, field 22 of
/proc/P/stat, read before it can be reaped) or `{"error": "..."}`, and later `{"exit": P, "code": C}`
when it reaps a child. It ends when its stdin closes (its launcher has gone); the agents it forked
run on, in their own sessions, as agents started directly do.

Only AgentFleet's own code runs here, before the fork and in the child: what a task or a repository
wrote runs in the sandbox, as it does from an agent started directly. This process is single-threaded
when it forks (no thread is started here; the imports start none).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

logger = logging.getLogger("agentfleet.local.warm")

PRELOAD = ("agentfleet.agent.attempt", "agentfleet.agent.work", "agentfleet.backends", "agentfleet.local.store")
"""What the agent imports before its first model request (the gcp backends are left to the child)."""


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()[19]


def _child(request: dict[str, Any], inherited: tuple[int, ...]) -> None:
    """In the forked child: become the agent process the request describes, run it, exit."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in inherited:  # the launcher's protocol and wakeup pipes are not the agent's
            os.close(fd)
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's own standard streams
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = [sys.executable, "-m", "agentfleet.agent", *request["args"]]
        from agentfleet.agent.attempt import main

        code = main(list(request["args"]))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # the child must never return into the launcher's loop
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _reap(out: Any) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(out, {"exit": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(out: Any, message: dict[str, Any]) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def serve(stdin: Any, out: Any) -> None:
    """Answer launch requests read from `stdin` until it closes."""
    wakeup = os.pipe()
    os.set_blocking(wakeup[0], False)
    os.set_blocking(wakeup[1], False)
    signal.set_wakeup_fd(wakeup[1])
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select through the wakeup fd
    buffered = b""
    fd = stdin.fileno()
    while True:
        ready, _, _ = select.select([fd, wakeup[0]], [], [])
        if wakeup[0] in ready:
            while True:
                try:
                    if not os.read(wakeup[0], 512):
                        break
                except BlockingIOError:
                    break
        _reap(out)
        if fd not in ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buffered += chunk
        while b"\n" in buffered:
            line, buffered = buffered.split(b"\n", 1)
            _launch(line, out, (*wakeup, out.fileno()))


def _launch(line: bytes, out: Any, inherited: tuple[int, ...]) -> None:
    try:
        request = json.loads(line)
        Path(request["log"]).parent.mkdir(parents=True, exist_ok=True)
        pid = os.fork()
    except (OSError, ValueError, KeyError, TypeError) as exc:
        _send(out, {"error": f"{exc.__class__.__name__}: {exc}"})
        return
    if pid == 0:
        _child(request, inherited)
    _send(out, {"pid": pid, "start": _start_time(pid)})


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
        while _start_time(self.pid) == self.start and self.start is not None:
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
            [sys.executable, "-m", "agentfleet.local.warm"],
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


def main() -> None:
    import importlib

    for module in PRELOAD:
        importlib.import_module(module)
    from agentfleet.agent.work import tls_context

    tls_context()  # made once here, inherited by every agent
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write into the protocol
    _send(out, {"ready": os.getpid()})
    serve(sys.stdin, out)


if __name__ == "__main__":
    main()
