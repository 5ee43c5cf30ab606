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
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agentfleet.errors import SandboxUnavailableError
from agentfleet.runtime.capture import ExecResult, execute, kill_all
from agentfleet.settings import Settings

logger = logging.getLogger(__name__)
__all__ = ["ExecResult", "Sandbox", "SandboxConfig", "grant_workspace", "kill_all"]

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

    def run(self, command: str, timeout_s: int = 120) -> ExecResult:
        """Run `command` with bash; stdin is empty, stdout and stderr are merged and capped."""
        isolated = self._isolated()
        timeout = max(1, min(timeout_s, self.config.max_timeout_s))
        if isolated:
            return execute(self._bwrap_argv(command), self._env(SANDBOX_HOME), "/", timeout, self.config.output_limit)
        with tempfile.TemporaryDirectory(prefix="agentfleet-home-") as home:
            return execute(
                [*self.config.prelude(), command], self._env(home), str(self.root), timeout, self.config.output_limit
            )
