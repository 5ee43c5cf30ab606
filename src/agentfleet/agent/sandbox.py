"""Run the agent's shell commands inside bubblewrap, as an unprivileged user, bounded in time and output.

The sandbox sees the system directories read-only (/usr, /bin, /sbin, /lib*, /etc), the workspace
read-write at its real path (the command starts there), private /tmp, /dev/shm, /dev and /proc, a fresh
HOME (/tmp/home), no network unless allowed, and an environment that holds nothing of the host's.
/root, /home and other host data are not bound at all.

As root, bwrap runs as root (so it can bind a workspace whose ancestors, like /root, the sandbox user
cannot traverse) and keeps only CAP_SETUID/CAP_SETGID for `setpriv`, which drops to `sandbox_uid`/
`sandbox_gid` before the command runs; bwrap sets no_new_privs and mounts everything nosuid. As any
other user, bwrap runs directly as that user.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import logging
import os
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agentfleet.errors import SandboxUnavailableError
from agentfleet.settings import Settings

logger = logging.getLogger(__name__)

SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SANDBOX_HOME = "/tmp/home"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
# Lower the limits (never raise one an outer limit set lower), make HOME (owned by the sandbox
# user), then run the command ($1) with a shell of its own. Runs inside the sandbox, after any user
# namespace is made, so a process limit counts the processes of this sandbox's user there.
PRELUDE = (
    'lim() { cur=$(ulimit -H "$1"); if [ "$2" != 0 ] && { [ "$cur" = unlimited ] || [ "$cur" -gt "$2" ]; }; '
    'then ulimit -S -H "$1" "$2" || exit 125; fi; }; '
    "lim -u {processes}; lim -v {memory_kib}; lim -f {file_kib}; "
    'mkdir -p -m 700 "$HOME" 2>/dev/null; exec /bin/bash -c "$1"'
)
CHUNK = 65536
POLL_S = 0.05
PROBE_ARGS = "--ro-bind / / --dev /dev --proc /proc --unshare-net --unshare-pid --die-with-parent"
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


@dataclass(frozen=True)
class SandboxConfig:
    mode: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    uid: int = 65534
    gid: int = 65534
    network: bool = False
    output_limit: int = 16_000
    max_timeout_s: int = 1800
    extra_ro_binds: tuple[str, ...] = ()
    bwrap_path: str = "bwrap"
    # Limits on every command (0: none). Processes count per user: as root, every sandbox's user.
    max_processes: int = 512
    memory_bytes: int = 4 << 30  # address space of each process
    file_size_bytes: int = 1 << 30  # the largest file a command may write
    tmp_bytes: int = 1 << 30  # /tmp, a RAM-backed tmpfs
    shm_bytes: int = 256 << 20  # /dev/shm, likewise

    @classmethod
    def from_settings(cls, settings: Settings, *, network: bool) -> SandboxConfig:
        return cls(
            mode=settings.sandbox, allow_unsandboxed=settings.allow_unsandboxed,
            uid=settings.sandbox_uid, gid=settings.sandbox_gid, network=network,
            output_limit=settings.exec_output_limit, max_timeout_s=settings.exec_max_timeout_s,
            max_processes=settings.sandbox_max_processes, memory_bytes=settings.sandbox_memory_bytes,
            file_size_bytes=settings.sandbox_file_size_bytes, tmp_bytes=settings.sandbox_tmp_bytes,
            shm_bytes=settings.sandbox_shm_bytes,
        )  # fmt: skip

    def prelude(self) -> list[str]:
        """`bash -c PRELUDE bash`, to be followed by the command: limits, HOME, then the command."""
        script = PRELUDE.replace("{processes}", str(self.max_processes))
        script = script.replace("{memory_kib}", str(self.memory_bytes >> 10))
        script = script.replace("{file_kib}", str(self.file_size_bytes >> 10))
        return ["/bin/bash", "-c", script, "bash"]


def grant_workspace(root: Path, uid: int, gid: int) -> None:
    """Give the sandbox user the workspace tree (symlinks are not followed); a no-op when not root."""
    if os.geteuid() != 0 or not root.exists():
        return
    os.lchown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            os.lchown(os.path.join(dirpath, name), uid, gid)


def _is_root() -> bool:
    return os.geteuid() == 0


def _privilege_drop(uid: int, gid: int) -> list[str]:
    setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
    return [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--inh-caps=-all", "--"]


def _as_root_args() -> list[str]:
    return ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if _is_root() else []


@functools.lru_cache(maxsize=16)
def _probe(bwrap: str, uid: int, gid: int, as_root: bool) -> str | None:
    """Why bwrap cannot sandbox a command here, or None when it can. Cached per configuration."""
    path = shutil.which(bwrap)
    if path is None:
        return f"bubblewrap is missing ({bwrap!r} not found)"
    drop = _privilege_drop(uid, gid) if as_root else []
    argv = [path, *PROBE_ARGS.split(), *_as_root_args(), "--", *drop, "true"]
    try:
        proc = subprocess.run(
            argv, env={"PATH": SANDBOX_PATH}, stdin=subprocess.DEVNULL, capture_output=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap ({path}) could not be run: {exc}"
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()[:300]
        return f"bubblewrap ({path}) is installed but cannot create a sandbox here: {detail}"
    return None


@functools.cache
def _warn_once(reason: str) -> None:
    logger.warning("running commands WITHOUT a sandbox (AGENTFLEET_ALLOW_UNSANDBOXED): %s", reason)


def _system_binds() -> list[str]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _mounts(workspace: str, extra_ro: tuple[str, ...]) -> list[str]:
    """Bind the extra read-only paths and the workspace at their own paths. bwrap would make the
    missing parent directories 0700 root-owned; make them 0755 so the sandbox user can reach them."""
    args: list[str] = []
    made = {"/", "/tmp", "/dev", "/dev/shm", "/proc", *SYSTEM_DIRS}
    for path, kind in [*((p, "--ro-bind") for p in extra_ro), (workspace, "--bind")]:
        for parent in reversed(Path(path).parents):
            name = str(parent)
            if name not in made and not name.startswith(tuple(d + "/" for d in SYSTEM_DIRS)):
                args += ["--perms", "0755", "--dir", name]
                made.add(name)
        args += [kind, path, path]
    return args


def _tmpfs(path: str, size: int) -> list[str]:
    return ["--perms", "1777", *(["--size", str(size)] if size else []), "--tmpfs", path]


def _network_args(network: bool) -> list[str]:
    if not network:
        return ["--unshare-net"]
    resolv = os.path.realpath("/etc/resolv.conf")  # may point outside /etc (systemd-resolved)
    return [] if resolv.startswith("/etc/") else ["--ro-bind-try", resolv, resolv]


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


def kill_all(timeout_s: float = 5.0) -> None:
    """Kill every running command of this process (each whole process group) and reap them.

    For a process that is ending (cancelled, requeued, its parent gone): with bubblewrap, a
    command's sandbox and all it started die with bwrap; without it, its process group does."""
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        _kill_group(proc.pid)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout_s)


class Sandbox:
    """Runs shell commands in `root` under `config`; `env` adds variables to the minimal environment."""

    def __init__(self, root: Path, config: SandboxConfig, env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.config = config
        self.extra_env = dict(env or {})

    def _env(self, home: str) -> dict[str, str]:
        base = {"PATH": SANDBOX_PATH, "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb"}
        return {**base, **self.extra_env}

    def _isolated(self) -> bool:
        """True when commands run in bwrap, False when unsandboxed (and allowed); raises otherwise."""
        config = self.config
        if config.mode == "none":
            if not config.allow_unsandboxed:
                raise SandboxUnavailableError(
                    "AGENTFLEET_SANDBOX=none runs commands without isolation; "
                    "set AGENTFLEET_ALLOW_UNSANDBOXED=true to allow that, or use AGENTFLEET_SANDBOX=bwrap"
                )
            return False
        reason = _probe(config.bwrap_path, config.uid, config.gid, _is_root())
        if reason is None:
            return True
        if config.allow_unsandboxed:
            _warn_once(reason)
            return False
        raise SandboxUnavailableError(
            f"Commands cannot be sandboxed: {reason}. Install bubblewrap (Debian/Ubuntu: "
            "`apt-get install bubblewrap`), or set AGENTFLEET_ALLOW_UNSANDBOXED=true to run commands "
            "without isolation (they can then read and change anything this process can)."
        )

    def check(self) -> None:
        """Raise SandboxUnavailableError when commands could not run under this configuration."""
        self._isolated()

    def argv(self, command: str) -> list[str]:
        """The full argv that `run` executes for `command`."""
        if not self._isolated():
            return [*self.config.prelude(), command]
        return self._bwrap_argv(command)

    def _bwrap_argv(self, command: str) -> list[str]:
        config = self.config
        bwrap = shutil.which(config.bwrap_path) or config.bwrap_path
        ws = str(self.root)
        setenv = [a for k, v in self._env(SANDBOX_HOME).items() for a in ("--setenv", k, v)]
        drop = _privilege_drop(config.uid, config.gid) if _is_root() else []
        return [
            bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            *_network_args(config.network), *_system_binds(),
            "--dev", "/dev", "--proc", "/proc", *_tmpfs("/tmp", config.tmp_bytes),
            *_tmpfs("/dev/shm", config.shm_bytes), *_mounts(ws, config.extra_ro_binds), "--chdir", ws,
            "--clearenv", *setenv, *_as_root_args(),
            "--", *drop, *config.prelude(), command,
        ]  # fmt: skip

    def run(self, command: str, timeout_s: int = 120) -> ExecResult:
        """Run `command` with bash; stdin is empty, stdout and stderr are merged and capped."""
        isolated = self._isolated()
        timeout = max(1, min(timeout_s, self.config.max_timeout_s))
        if isolated:
            return self._execute(self._bwrap_argv(command), self._env(SANDBOX_HOME), "/", timeout)
        with tempfile.TemporaryDirectory(prefix="agentfleet-home-") as home:
            return self._execute([*self.config.prelude(), command], self._env(home), str(self.root), timeout)

    def _execute(self, argv: list[str], env: dict[str, str], cwd: str, timeout: int) -> ExecResult:
        started = time.monotonic()
        capture = _Capture(self.config.output_limit)
        with _running_lock:
            proc = subprocess.Popen(
                argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
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
            exit_code=None if timed_out else proc.returncode, output=output, timed_out=timed_out,
            truncated=truncated, duration_s=time.monotonic() - started,
        )  # fmt: skip


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
