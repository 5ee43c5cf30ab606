"""The executor a sandbox session runs inside its one bubblewrap (runtime/sandbox.py): standalone,
standard library only, run as `python3 -I -S -c SOURCE` with the system's Python, as the sandbox user.

It answers framed requests on stdin with framed results on stdout. A frame is a 4-byte big-endian
length and that many bytes. A request is one JSON frame {"command", "timeout", "limit"}; a result
is a JSON frame {"exit_code", "timed_out", "duration", "total", "forks"} followed by two raw frames,
the head and the tail of the output (the same cut as runtime/capture.py's _Capture). The first
frame it writes is {"ready": true, "pid": ...}.

Per command it forks `bash -c COMMAND` in a process group of its own, stdin /dev/null, stdout and
stderr into one pipe, reads it until the command exits or its timeout passes (then the group is
killed), and then kills every other process of the sandbox (`kill(-1, SIGKILL)` from inside the pid
namespace spares only itself and the namespace's init): nothing a command started outlives it.
It makes itself non-dumpable first, so a command (the same user) can neither ptrace it nor open
its /proc files (its request and result pipes).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import selectors
import signal
import struct
import subprocess
import sys
import time

CHUNK = 65536
MARKER_RESERVE = 48  # as in runtime/capture.py
PR_SET_DUMPABLE = 4
KILL_ROUNDS = 50


class Capture:
    """The head and the tail of a stream, cut as runtime/capture.py's _Capture cuts them."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 0)
        head_keep = max(self.limit - MARKER_RESERVE, 0) // 2
        self.tail_keep = max(self.limit - MARKER_RESERVE - head_keep, 0)
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


def read_exact(fd: int, n: int) -> bytes | None:
    data = bytearray()
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def write_frames(fd: int, *frames: bytes) -> None:
    data = b"".join(struct.pack(">I", len(f)) + f for f in frames)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_available(fd: int, capture: Capture) -> bool:
    """Read what the pipe holds (a bounded number of chunks); True at end of file."""
    for _ in range(16):
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        capture.feed(chunk)
    return False


def exited(pid: int) -> bool:
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def others() -> list[int]:
    """The processes of the sandbox still alive (not zombies), but this one and the init."""
    me, alive = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in (1, me):
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            alive.append(int(name))
    return alive


def kill_the_rest() -> None:
    """Kill every process this one may signal, until none is left (one forking while the kill
    went round is caught by the next round), reaping our own children."""
    for _ in range(KILL_ROUNDS):
        with contextlib.suppress(ProcessLookupError):
            os.kill(-1, signal.SIGKILL)
        reap()
        if not others():
            return
        time.sleep(0.001)


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def run(command: str, timeout: float, limit: int, home: str) -> tuple[int | None, bool, Capture]:
    capture = Capture(limit)
    with contextlib.suppress(OSError):
        os.makedirs(home, mode=0o700, exist_ok=True)  # as the prelude does for each command
    started = time.monotonic()
    proc = subprocess.Popen(
        ["/bin/bash", "-c", command],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        close_fds=True,
    )
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    timed_out, reading = False, True
    pidfd = os.pidfd_open(proc.pid)
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            selector.register(pidfd, selectors.EVENT_READ)
            while True:
                remaining = started + timeout - time.monotonic()
                if remaining <= 0:
                    timed_out = True
                    break
                for key, _ in selector.select(remaining):
                    if key.fd == fd and reading and read_available(fd, capture):
                        selector.unregister(fd)
                        reading = False
                if exited(proc.pid):
                    if reading:
                        read_available(fd, capture)
                    break
    finally:
        os.close(pidfd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        kill_the_rest()
    code = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode  # as bwrap reports it
    return (None if timed_out else code), timed_out, capture


def main() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_SET_DUMPABLE): errno {ctypes.get_errno()}")
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    home = os.environ.get("HOME", "/tmp/home")
    write_frames(stdout, json.dumps({"ready": True, "pid": os.getpid()}).encode())
    forks = 0
    while True:
        size = read_exact(stdin, 4)
        if size is None:
            return
        body = read_exact(stdin, struct.unpack(">I", size)[0])
        if body is None:
            return
        request = json.loads(body)
        started = time.monotonic()
        forks += 1
        try:
            code, timed_out, capture = run(request["command"], float(request["timeout"]), int(request["limit"]), home)
        except (OSError, ValueError) as exc:  # a command bash cannot be given (a NUL, an unencodable name)
            kill_the_rest()
            code, timed_out, capture = 126, False, Capture(int(request["limit"]))
            capture.feed(f"the command could not be started: {exc}\n".encode())
        header = {
            "exit_code": code,
            "timed_out": timed_out,
            "duration": time.monotonic() - started,
            "total": capture.total,
            "forks": forks,
        }
        write_frames(stdout, json.dumps(header).encode(), bytes(capture.head), bytes(capture.tail))


if __name__ == "__main__":
    main()
