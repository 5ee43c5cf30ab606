"""Run the agent's shell commands inside bubblewrap, as an unprivileged user, bounded in time, output
and resources (the bounded process I/O itself is runtime/capture.py).

The sandbox sees the system directories read-only (/usr, /bin, /sbin, /lib*, /etc), the workspace
read-write at its real path (the command starts there), private /tmp, /dev/shm, /dev and /proc, a fresh
HOME (/tmp/home), no network unless allowed, and an environment that holds nothing of the host's.
/root, /home and other host data are not bound at all.

As root, bwrap runs as root (so it can bind a workspace whose ancestors, like /root, the sandbox user
cannot traverse) and keeps only CAP_SETUID/CAP_SETGID for `setpriv`, which drops to `sandbox_uid`/
`sandbox_gid` before the command runs; bwrap sets no_new_privs and mounts everything nosuid. As any
other user, bwrap runs directly as that user.

Two ways to run a command, with the same recipe (binds, limits, user, network):
- `Sandbox.run`: one bubblewrap per command. Acceptance checks and setup run so: each starts from a
  sandbox nothing earlier could have touched.
- `Sandbox.session()`: one bubblewrap per session, in which a small trusted executor
  (runtime/sandbox_executor.py, the system's Python) forks each command and, once it has ended,
  kills every other process in the sandbox, so nothing a command started outlives it (as with
  one bubblewrap per command). The agent's own tool commands run so, a fork instead of a sandbox
  per step. What changes: /tmp and $HOME persist across the commands of one session, as in a
  persistent shell. A command can kill the executor (the same user): the session then starts a
  new sandbox at the next command and the result says so. It cannot ptrace it or open its
  pipes (the executor is non-dumpable). Without a Python under the system directories, or
  unsandboxed, a session runs each command through `Sandbox.run`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import selectors
import shlex
import shutil
import struct
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict

from agentfleet.errors import SandboxUnavailableError
from agentfleet.runtime.capture import ExecResult, cut, execute, kill_all, track, untrack
from agentfleet.settings import Settings

logger = logging.getLogger(__name__)
__all__ = ["ExecResult", "Sandbox", "SandboxConfig", "SandboxSession", "grant_workspace", "kill_all"]

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
EXECUTOR_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")
"""Where the session's executor looks for a Python: inside the system directories the sandbox binds."""
EXECUTOR_SOURCE = Path(__file__).with_name("sandbox_executor.py")
START_TIMEOUT_S = 30.0
ANSWER_GRACE_S = 10.0
"""How much longer than a command's timeout the executor may take to answer before it is killed."""
PROBE_ARGS = "--ro-bind / / --dev /dev --proc /proc --unshare-net --unshare-pid --die-with-parent"


class SandboxConfig(BaseModel):
    """How commands run: a typed model, so that it crosses to the workspace server as it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mode: Literal["bwrap", "none"] = "bwrap"
    allow_unsandboxed: bool = False
    """Run without isolation where bubblewrap cannot (never silently)."""
    uid: int = 65534
    """The unprivileged user commands run as, when AgentFleet runs as root."""
    gid: int = 65534
    network: bool = False
    output_limit: int = 16_000
    """Bytes of output kept, head and tail."""
    max_timeout_s: int = 1800
    extra_ro_binds: tuple[str, ...] = ()
    bwrap_path: str = "bwrap"
    max_processes: int = 512
    """Limits on every command (0: none). Processes count per user: as root, every sandbox's user."""
    memory_bytes: int = 4 << 30
    """Address space of each process."""
    file_size_bytes: int = 1 << 30
    """The largest file a command may write."""
    tmp_bytes: int = 1 << 30
    """/tmp, a RAM-backed tmpfs."""
    shm_bytes: int = 256 << 20
    """/dev/shm, likewise."""
    path_prepend: tuple[str, ...] = ()
    """Folders inside the workspace put before the system's on PATH (a checkout's .venv/bin)."""

    @classmethod
    def from_settings(cls, settings: Settings, *, network: bool) -> SandboxConfig:
        return cls(
            mode=settings.sandbox,
            allow_unsandboxed=settings.allow_unsandboxed,
            uid=settings.sandbox_uid,
            gid=settings.sandbox_gid,
            network=network,
            output_limit=settings.exec_output_limit,
            max_timeout_s=settings.exec_max_timeout_s,
            max_processes=settings.sandbox_max_processes,
            memory_bytes=settings.sandbox_memory_bytes,
            file_size_bytes=settings.sandbox_file_size_bytes,
            tmp_bytes=settings.sandbox_tmp_bytes,
            shm_bytes=settings.sandbox_shm_bytes,
        )

    def prelude(self) -> list[str]:
        """`bash -c PRELUDE bash`, to be followed by the command: limits, HOME, then the command."""
        script = PRELUDE.replace("{processes}", str(self.max_processes))
        script = script.replace("{memory_kib}", str(self.memory_bytes >> 10))
        script = script.replace("{file_kib}", str(self.file_size_bytes >> 10))
        return ["/bin/bash", "-c", script, "bash"]


def grant_workspace(root: Path, uid: int, gid: int) -> None:
    """Give the sandbox user the workspace tree (symlinks are not followed); a no-op when not root.

    What the user owns already is left alone: a chown changes a file's ctime even when the owner
    stays, and git takes a changed ctime for a changed file, so chowning the whole tree again
    before each task made the next checkout hash every file anew (the host's index keeps the
    stat data it last saw; runtime/git.py)."""
    if os.geteuid() != 0 or not root.exists():
        return
    _grant(str(root), uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            _grant(os.path.join(dirpath, name), uid, gid)


def _grant(path: str, uid: int, gid: int) -> None:
    info = os.lstat(path)
    if (info.st_uid, info.st_gid) != (uid, gid):
        os.lchown(path, uid, gid)


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


class Sandbox:
    """Runs shell commands in `root` under `config`; `env` adds variables to the minimal environment."""

    def __init__(self, root: Path, config: SandboxConfig, env: Mapping[str, str] | None = None) -> None:
        self.root = Path(root).resolve()
        self.config = config
        self.extra_env = dict(env or {})

    def _env(self, home: str) -> dict[str, str]:
        path = ":".join([*self.config.path_prepend, SANDBOX_PATH])
        # No .pyc from the checkout: an edit within the second of a run, at the same size, would
        # otherwise leave Python running the stale bytecode (its check is mtime + size).
        base = {"PATH": path, "HOME": home, "LANG": "C.UTF-8", "TERM": "dumb", "PYTHONDONTWRITEBYTECODE": "1"}
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
            bwrap,
            "--die-with-parent",
            "--new-session",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            *_network_args(config.network),
            *_system_binds(),
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            *_tmpfs("/tmp", config.tmp_bytes),
            *_tmpfs("/dev/shm", config.shm_bytes),
            *_mounts(ws, config.extra_ro_binds),
            "--chdir",
            ws,
            "--clearenv",
            *setenv,
            *_as_root_args(),
            "--",
            *drop,
            *config.prelude(),
            command,
        ]

    def _timeout(self, timeout_s: int) -> int:
        return max(1, min(timeout_s, self.config.max_timeout_s))

    def session(self) -> SandboxSession:
        """A session: one sandbox for many commands (see the module's docstring); `close` it."""
        return SandboxSession(self)

    def run(self, command: str, timeout_s: int = 120) -> ExecResult:
        """Run `command` with bash; stdin is empty, stdout and stderr are merged and capped."""
        isolated = self._isolated()
        timeout = self._timeout(timeout_s)
        if isolated:
            return execute(self._bwrap_argv(command), self._env(SANDBOX_HOME), "/", timeout, self.config.output_limit)
        with tempfile.TemporaryDirectory(prefix="agentfleet-home-") as home:
            return execute(
                [*self.config.prelude(), command], self._env(home), str(self.root), timeout, self.config.output_limit
            )


def _executor_python() -> str | None:
    return next((p for p in EXECUTOR_PYTHONS if os.access(p, os.X_OK)), None)


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """The thread that starts every session's bwrap. `--die-with-parent` is the parent-death
    signal, sent when the *thread* that forked bwrap ends, not the process: a session started
    from a worker thread (an MCP tool call) would die with that thread. This one lives as long
    as the process."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")


def _end(proc: subprocess.Popen[bytes]) -> None:
    """Kill a session's bwrap (the sandbox and all in it die with it) and let go of its pipes."""
    kill_all([proc])
    untrack(proc)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            with contextlib.suppress(OSError):
                pipe.close()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Lost(Exception):
    """The executor is gone (killed, crashed) or did not answer in time."""


class SandboxSession:
    """One bubblewrap running the executor, started at the first command and restarted at the
    next one after it died; commands run one at a time. Thread-safe; `close` ends it."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.starts = 0
        """How many sandboxes this session has started (a bwrap each)."""
        self.forks = 0
        """How many processes the executor says it forked in the current sandbox."""
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None
        self._lost = False
        self._lock = threading.Lock()
        self._finalizer: weakref.finalize[Any, Any] | None = None

    @property
    def pid(self) -> int | None:
        """The bwrap process's id while a sandbox runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def run(self, command: str, timeout_s: int = 120) -> ExecResult:
        """As `Sandbox.run`, in this session's sandbox."""
        python = _executor_python()
        if not self.sandbox._isolated() or python is None:
            return self.sandbox.run(command, timeout_s)
        timeout = self.sandbox._timeout(timeout_s)
        with self._lock:
            restarted = self._lost
            if self._proc is not None and self._proc.poll() is not None:  # ended between commands
                self._stop()
                restarted = True
            if self._proc is None:
                self._start(python)
            started = time.monotonic()
            try:
                result = self._ask(command, timeout)
            except _Lost as exc:
                return self._lose(exc, started)
            self._lost = False
        if restarted:
            note = "[the sandbox was restarted after the previous one ended: /tmp and $HOME are empty]\n"
            return ExecResult(
                result.exit_code, note + result.output, result.timed_out, result.truncated, result.duration_s
            )
        return result

    def _start(self, python: str) -> None:
        source = EXECUTOR_SOURCE.read_text()
        argv = self.sandbox._bwrap_argv(f"exec {python} -I -S -c {shlex.quote(source)}")
        self._stderr = tempfile.TemporaryFile(prefix="agentfleet-sandbox-")  # noqa: SIM115 (closed in _stop)
        stderr, env = self._stderr, self.sandbox._env(SANDBOX_HOME)

        def spawn() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                argv,
                cwd="/",
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
            )

        proc = _spawner().submit(spawn).result()
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)  # read as it comes (arun: on the event loop)
        track(proc)  # capture.kill_all (SIGTERM, the owner gone) kills it with the rest
        self._proc = proc
        self._finalizer = weakref.finalize(self, _end, proc)  # a session dropped unclosed
        self.starts += 1
        self.forks = 0
        try:
            ready = json.loads(self._frame(time.monotonic() + START_TIMEOUT_S))
        except (_Lost, ValueError) as exc:
            detail = self._stderr_text()
            self._stop()
            raise SandboxUnavailableError(f"the sandbox session did not start ({exc}): {detail}") from None
        if not isinstance(ready, dict) or ready.get("ready") is not True:
            self._stop()
            raise SandboxUnavailableError(f"the sandbox session did not start: it said {ready!r}")

    async def arun(self, command: str, timeout_s: int = 120) -> ExecResult:
        """As `run`, awaiting the answer on the event loop: a running sandbox's command costs no
        thread. The first command, a restart, a fallback and a session busy in another thread
        take `run`'s path in a worker thread."""
        if not self._lock.acquire(blocking=False):
            return await asyncio.to_thread(self.run, command, timeout_s)
        try:
            proc = self._proc
            steady = not self._lost and proc is not None and proc.poll() is None
            if steady and self.sandbox._isolated() and _executor_python() is not None:
                return await self._aask(command, self.sandbox._timeout(timeout_s))
        finally:
            self._lock.release()
        return await asyncio.to_thread(self.run, command, timeout_s)

    async def _aask(self, command: str, timeout: int) -> ExecResult:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        try:
            self._send(command, timeout)
            deadline = loop.time() + timeout + ANSWER_GRACE_S
            header, head, tail = [await self._aframe(deadline) for _ in range(3)]
            return self._answer(header, head, tail)
        except _Lost as exc:
            return self._lose(exc, started)
        except BaseException:  # cancelled mid-command: the executor's answer would come to no one
            self._stop()
            self._lost = True
            raise

    async def _aframe(self, deadline: float) -> bytes:
        size = struct.unpack(">I", await self._aread(4, deadline))[0]
        return await self._aread(size, deadline)

    async def _aread(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        loop = asyncio.get_running_loop()
        data = bytearray()
        while len(data) < n:
            try:
                chunk = os.read(fd, n - len(data))
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_reader(fd, _settle, ready)
                try:
                    await asyncio.wait_for(ready, max(deadline - loop.time(), 0))
                except TimeoutError:
                    raise _Lost("the sandbox did not answer in time") from None
                finally:
                    loop.remove_reader(fd)
                continue
            if not chunk:
                raise _Lost("the sandbox ended during the command")
            data += chunk
        return bytes(data)

    def _lose(self, exc: _Lost, started: float) -> ExecResult:
        self._stop()
        self._lost = True
        return ExecResult(
            exit_code=None,
            output=f"[{exc}; the next command starts a new sandbox, with /tmp and $HOME empty]",
            timed_out=False,
            truncated=False,
            duration_s=time.monotonic() - started,
        )

    def _send(self, command: str, timeout: int) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        request = json.dumps({"command": command, "timeout": timeout, "limit": self.sandbox.config.output_limit})
        body = request.encode()
        try:  # the executor is reading (between commands nothing else runs that could stop it)
            self._proc.stdin.write(struct.pack(">I", len(body)) + body)
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise _Lost("the sandbox had ended before the command ran") from None

    def _ask(self, command: str, timeout: int) -> ExecResult:
        self._send(command, timeout)
        deadline = time.monotonic() + timeout + ANSWER_GRACE_S  # read at each call: tests lower it
        header, head, tail = (self._frame(deadline) for _ in range(3))
        return self._answer(header, head, tail)

    def _answer(self, header_frame: bytes, head: bytes, tail: bytes) -> ExecResult:
        try:
            header = json.loads(header_frame)
            exit_code, timed_out = header["exit_code"], bool(header["timed_out"])
            duration, total, forks = float(header["duration"]), int(header["total"]), int(header["forks"])
        except (ValueError, KeyError, TypeError):
            raise _Lost("the sandbox answered garbage") from None
        self.forks = forks
        output, truncated = cut(self.sandbox.config.output_limit, head, tail, total)
        code = None if timed_out else (int(exit_code) if exit_code is not None else None)
        return ExecResult(exit_code=code, output=output, timed_out=timed_out, truncated=truncated, duration_s=duration)

    def _frame(self, deadline: float) -> bytes:
        size = struct.unpack(">I", self._read(4, deadline))[0]
        return self._read(size, deadline)

    def _read(self, n: int, deadline: float) -> bytes:
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        data = bytearray()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while len(data) < n:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise _Lost("the sandbox did not answer in time")
                try:
                    chunk = os.read(fd, n - len(data))
                except BlockingIOError:
                    continue
                if not chunk:
                    raise _Lost("the sandbox ended during the command")
                data += chunk
        return bytes(data)

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read(2000).decode("utf-8", "replace").strip()

    def _stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            if self._finalizer is not None:
                self._finalizer.detach()
            _end(proc)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def close(self) -> None:
        """End the sandbox and everything in it (a later command starts a new one). With a command
        in flight (on the event loop this close may be blocking) the sandbox is killed under it:
        that command ends as lost and cleans up after itself."""
        if not self._lock.acquire(blocking=False):
            proc = self._proc
            if proc is not None:  # its pipes stay open: the command in flight reads the end there
                kill_all([proc])
            return
        try:
            self._stop()
            self._lost = False
        finally:
            self._lock.release()

    def __enter__(self) -> SandboxSession:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
