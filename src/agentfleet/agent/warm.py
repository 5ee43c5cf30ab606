"""`python -m agentfleet.agent.warm`: the warm launcher's process. It imports what an attempt needs
once, then forks one agent per launch request; the host side that starts it and asks is
local/warm.py (`WarmLauncher`, used by `LocalJobRunner`).

A child is what `python -m agentfleet.agent` would have been: its own session (process group), stdin
/dev/null, stdout and stderr to the attempt's log, the environment it was given (nothing of this
process's), its command line shown as that of `python -m agentfleet.agent ARGS`; then it runs
`agentfleet.agent.attempt.main` and exits with its code.

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
import os
import select
import signal
import sys
from pathlib import Path
from typing import Any

import setproctitle

from agentfleet.local.warm import start_time

PRELOAD = ("agentfleet.agent.attempt", "agentfleet.agent.work", "agentfleet.backends", "agentfleet.local.store")
"""What the agent imports before its first model request (the gcp backends are left to the child)."""


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
        setproctitle.setproctitle(" ".join(sys.argv))  # what ps shows: the agent, not this launcher
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
    _send(out, {"pid": pid, "start": start_time(pid)})


def main() -> None:
    import importlib

    setproctitle.getproctitle()  # its set-up, while the argv and environment areas are as exec left
    # them: a child's title may then use both (set up after the child's environment changes, it
    # would fit only in this process's short command line)
    for module in PRELOAD:
        importlib.import_module(module)
    from agentfleet.agent.work import warm_up
    from agentfleet.settings import Settings

    with contextlib.suppress(Exception):  # settings that do not validate: each agent reports that itself
        warm_up(Settings())  # made once here, inherited by every agent
    out = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # nothing else may write into the protocol
    _send(out, {"ready": os.getpid()})
    serve(sys.stdin, out)


if __name__ == "__main__":
    main()
