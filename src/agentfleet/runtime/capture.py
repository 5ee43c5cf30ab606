"""Running a process with bounded output and a deadline: the head and the tail of what it writes
are kept (memory stays within about twice the limit), it is read without blocking until it exits
or the deadline passes, and then its whole process group is killed. Every command a process
starts is registered, so `kill_all` can stop them when the process itself has to end.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import select
import selectors
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

CHUNK = 65536
POLL_S = 0.05
MARKER_RESERVE = 48  # room for the "… [N bytes omitted] …" marker inside output_limit


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when killed by timeout
    output: str
    timed_out: bool
    truncated: bool
    duration_s: float

    def render(self) -> str:
        """What the model sees: the output, then how the command ended."""
        if self.timed_out:
            status = f"[timed out after {round(self.duration_s)}s]"
        elif self.exit_code is not None and self.exit_code < 0:
            status = f"[killed by signal {-self.exit_code}]"
        else:
            status = f"[exit code {self.exit_code}]"
        if self.output and not self.output.endswith("\n"):
            return f"{self.output}\n{status}"
        return self.output + status


class _Capture:
    """Keeps the head and the tail of a stream; memory stays within about twice the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        self.head_keep = max(self.limit - MARKER_RESERVE, 0) // 2
        self.tail_keep = max(self.limit - MARKER_RESERVE - self.head_keep, 0)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        room = self.limit - len(self.head)
        if room > 0:
            self.head += chunk[:room]
            chunk = chunk[room:]
        if chunk:
            self.tail += chunk
            if len(self.tail) > self.tail_keep:
                del self.tail[: len(self.tail) - self.tail_keep]

    def text(self) -> tuple[str, bool]:
        """The decoded output and whether anything was left out."""
        if self.total <= self.limit:
            return bytes(self.head).decode("utf-8", "replace"), False
        rest = bytes(self.head[self.head_keep :]) + bytes(self.tail)
        tail = rest[max(len(rest) - self.tail_keep, 0) :] if self.tail_keep else b""
        tail = tail.lstrip(bytes(range(0x80, 0xC0)))  # no torn character at the start of the tail
        omitted = self.total - self.head_keep - len(tail)
        head = codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(self.head[: self.head_keep]))
        return f"{head}\n… [{omitted} bytes omitted] …\n{tail.decode('utf-8', 'replace')}", True


def cut(limit: int, head: bytes, tail: bytes, total: int) -> tuple[str, bool]:
    """The text of a capture kept elsewhere (the sandbox session's executor keeps the same head
    and tail): as `_Capture.text`."""
    capture = _Capture(limit)
    capture.head, capture.tail, capture.total = bytearray(head), bytearray(tail), total
    return capture.text()


def _read_available(fd: int, capture: _Capture, max_reads: int = 16) -> bool:
    """Read what the pipe holds (a bounded number of chunks); True at end of file."""
    for _ in range(max_reads):
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        capture.feed(chunk)
    return False


def _exited(pid: int) -> bool:
    """Whether the child has exited, without reaping it (its pid keeps the process group's id taken)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


@contextlib.contextmanager
def _pidfd(pid: int) -> Iterator[int | None]:
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        yield None
        return
    try:
        yield fd
    finally:
        os.close(fd)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


_running: set[subprocess.Popen[bytes]] = set()
"""Every command this process has started and not yet reaped (each leads its own process group)."""
_running_lock = threading.Lock()


def track(proc: subprocess.Popen[bytes]) -> None:
    """Count `proc` (the leader of a process group) among the commands `kill_all` kills: a
    long-lived sandbox (runtime/sandbox.py's SandboxSession)."""
    with _running_lock:
        _running.add(proc)


def untrack(proc: subprocess.Popen[bytes]) -> None:
    with _running_lock:
        _running.discard(proc)


def kill_all(procs: list[subprocess.Popen[bytes]] | None = None, timeout_s: float = 5.0) -> None:
    """Kill every running command of this process (each whole process group), or those of
    `procs`, and reap them.

    For a process that is ending (cancelled, requeued, its parent gone): with bubblewrap, a
    command's sandbox and all it started die with bwrap; without it, its process group does."""
    if procs is None:
        with _running_lock:
            procs = list(_running)
    for proc in procs:
        _kill_group(proc.pid)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)


def execute(argv: list[str], env: dict[str, str], cwd: str, timeout: float, output_limit: int) -> ExecResult:
    """Run `argv` (stdin empty, stdout and stderr merged, the head and tail of it kept up to
    `output_limit`) until it exits or `timeout` seconds pass; then its whole process group is killed."""
    started = time.monotonic()
    capture = _Capture(output_limit)
    with _running_lock:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        _running.add(proc)
    try:
        timed_out = _pump(proc, started + timeout, capture)
    finally:
        _kill_group(proc.pid)  # stragglers too; the unreaped child still holds the group's id
        proc.wait()
        with _running_lock:
            _running.discard(proc)
        if proc.stdout is not None:
            proc.stdout.close()
    output, truncated = capture.text()
    return ExecResult(
        exit_code=None if timed_out else proc.returncode,
        output=output,
        timed_out=timed_out,
        truncated=truncated,
        duration_s=time.monotonic() - started,
    )


def _pump(proc: subprocess.Popen[bytes], deadline: float, capture: _Capture) -> bool:
    """Read the output until the command exits; True when the deadline came first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    reading = True
    with selectors.DefaultSelector() as selector, _pidfd(proc.pid) as pidfd:
        selector.register(fd, selectors.EVENT_READ)
        if pidfd is not None:
            selector.register(pidfd, selectors.EVENT_READ)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            wait = remaining if pidfd is not None else min(remaining, POLL_S)
            for key, _ in selector.select(wait):
                if key.fd == fd and _read_available(fd, capture):
                    selector.unregister(fd)
                    reading = False
            if _exited(proc.pid):
                if reading:
                    _read_available(fd, capture)
                return False


# --- ending with the owner -------------------------------------------------------------------


def _end_now(*_: object) -> None:
    """Kill every running command (its whole sandbox) and exit, releasing the held lock."""
    kill_all()
    os._exit(0)


def end_with(owner_pid: int) -> None:
    """End this process (its commands killed first) when `owner_pid`, its parent, ends, and on
    SIGTERM: a server the MCP client starts in a session of its own is out of reach of a signal to
    the agent's process group (a cancel, a requeue)."""
    if os.getppid() != owner_pid:  # the owner ended before we got here
        _end_now()
    signal.signal(signal.SIGTERM, _end_now)
    threading.Thread(target=_watch, args=(owner_pid,), name="owner-watch", daemon=True).start()


def _watch(owner_pid: int) -> None:
    try:
        fd = os.pidfd_open(owner_pid)
    except OSError:  # no pidfd (old kernel): see whether we were handed to another parent
        while os.getppid() == owner_pid:
            threading.Event().wait(0.2)
        _end_now()
        return
    select.select([fd], [], [])  # readable once the process has ended
    _end_now()
