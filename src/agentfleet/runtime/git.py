"""The one hardened git wrapper of the host: every git the host runs, and what it runs on a
checkout the agent has had (the guard of its `.git`, the patch, the stat, the push).

Every command runs non-interactively (GIT_TERMINAL_PROMPT=0, ssh in batch mode), under a
time limit (GIT_TIMEOUT_S; Settings has no git timeout), with `safe.directory=*` (we run as
root on trees chowned to the sandbox user), and with URL credentials stripped from every error
message.

A checkout is written by the agent and by the repository, so host git must never read a thing
from it that can make it run a program or lie about the work:
- config: the `.git/config` is rewritten from what we wrote before every use (restore_gitdir);
  hooks, fsmonitor, external diff and textconv are switched off on the command line;
- nested repositories (a `.git` below the top, a submodule's working tree): git never enters
  them, so their config, hooks and filters never apply: they are found by a walk that follows
  no link, left out of every pathspec, submodules are ignored, and the patch says so;
- the index: every host command uses an index of its own outside the workspace, so flags the
  agent sets in `.git/index` (skip-worktree, assume-unchanged) cannot hide a change;
- replace refs (`refs/replace/`) cannot swap the base commit (GIT_NO_REPLACE_OBJECTS).
Attributes in the working tree can only name drivers that config defines, and ours defines none.
git that acts on the checkout for the agent (git_status, git_diff) runs inside the sandbox.

One unit, over ~300 lines: every git the host runs on a workspace goes through here, so the
hardening is in one place to read and to test.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO, NoReturn

from agentfleet.errors import WorkspaceError
from agentfleet.runtime.files import has_symlink, real_dir, remove_path, write_new

GIT_TIMEOUT_S = 600
"""Wall-clock limit of one git command, in seconds."""

_SAFE_CONFIG = (
    "-c",
    "safe.directory=*",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "protocol.ext.allow=never",
    "-c",
    "diff.external=",
    "-c",
    "submodule.recurse=false",
    "-c",
    "diff.ignoreSubmodules=all",
    "-c",
    "status.submoduleSummary=false",
    "-c",
    "fetch.recurseSubmodules=false",
    "-c",
    "push.recurseSubmodules=no",
    "-c",
    "core.untrackedCache=false",
    "-c",
    "commit.gpgSign=false",
)
_ENV_DROP = frozenset(
    {
        "GIT_DIR",
        "GIT_WORK_TREE",
        "GIT_INDEX_FILE",
        "GIT_OBJECT_DIRECTORY",
        "GIT_COMMON_DIR",
        "GIT_ALTERNATE_OBJECT_DIRECTORIES",
        "GIT_NAMESPACE",
        "GIT_PREFIX",
        "GIT_CEILING_DIRECTORIES",
    }
)
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
CHECKOUT_REFSPECS = ("+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
"""Where a checkout's fetch puts the mirror's branches and tags (its config names them)."""
EXCLUDED = ("/.agentfleet/inputs/",)
"""Workspace paths that are never part of a patch, even when tracked."""
BYPRODUCTS = (
    ".venv/",
    "venv/",
    "node_modules/",
    "__pycache__/",
    "*.py[cod]",
    ".pytest_cache/",
    ".mypy_cache/",
    ".ruff_cache/",
    ".tox/",
    ".nox/",
    "*.egg-info/",
)
"""Ignored in every checkout (info/exclude) whatever its .gitignore says: new files there never
enter a patch, and setup results there (environments, packages) survive `git clean`."""
_DIFF = ("diff", "--cached", "--no-color", "--no-ext-diff", "--no-textconv", "--ignore-submodules=all")
STAT_FILES = 200
"""Files a diff stat names before it says how many more there are."""


def redact_text(text: str) -> str:
    """`text` with the user-info part of every URL in it replaced by ***."""
    return _CREDENTIALS.sub(r"\1***@", text)


GIT_TOKEN_ENV = "AGENTFLEET_GIT_TOKEN"
_TOKEN_HELPER = (
    f'!f() {{ test "$1" = get || exit 0; echo username=x-access-token; '
    f'printf "password=%s\\n" "${GIT_TOKEN_ENV}"; }}; f'
)
"""A credential helper of our own text that answers with the token from the environment (never in argv)."""


def _token_config(env: dict[str, str]) -> None:
    """With AGENTFLEET_GIT_TOKEN set, the token is git's only credential helper over HTTPS: an empty
    entry first drops every helper configured before (a checkout's own config included)."""
    if not env.get(GIT_TOKEN_ENV):
        return
    count = int(env.get("GIT_CONFIG_COUNT", "0") or "0")
    for offset, value in enumerate(("", _TOKEN_HELPER)):
        env[f"GIT_CONFIG_KEY_{count + offset}"] = "credential.helper"
        env[f"GIT_CONFIG_VALUE_{count + offset}"] = value
    env["GIT_CONFIG_COUNT"] = str(count + 2)


def _env(index: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(GIT_TERMINAL_PROMPT="0", GCM_INTERACTIVE="never", LC_ALL="C", GIT_NO_REPLACE_OBJECTS="1")
    env["GIT_ATTR_NOSYSTEM"] = "1"  # attributes name drivers from config only, and ours defines none
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    _token_config(env)
    if index is not None:
        env["GIT_INDEX_FILE"] = str(index)
    return env


def run_git(
    cwd: Path,
    *args: str,
    check: bool = True,
    input: str | None = None,
    timeout: float = GIT_TIMEOUT_S,
    index: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `git <args>` in `cwd`; WorkspaceError when it fails (if `check`) or runs too long.
    `index`: the index file to use instead of `.git/index`."""
    argv = ["git", *_SAFE_CONFIG, *args]
    with subprocess.Popen(
        argv,
        cwd=cwd,
        env=_env(index),
        text=True,
        encoding="utf-8",
        errors="surrogateescape",
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # helpers (ssh, remote-https) die with git
            proc.communicate()
            raise WorkspaceError(f"git {args[0]} took longer than {timeout:.0f} s and was stopped") from None
    result = subprocess.CompletedProcess(argv, proc.returncode, out, err)
    if check and result.returncode != 0:
        _failed(args, err or out, result.returncode)
    return result


def stream_git(
    cwd: Path, *args: str, dest: IO[bytes], limit: int, index: Path | None = None, timeout: float = GIT_TIMEOUT_S
) -> int:
    """Run `git <args>` and write at most `limit` bytes of its output to `dest`; return how many
    bytes it wrote in all (the rest is counted, not kept). Memory stays bounded whatever the size."""
    argv = ["git", *_SAFE_CONFIG, *args]
    deadline = time.monotonic() + timeout
    total = 0
    with (
        tempfile.TemporaryFile() as errors,
        subprocess.Popen(
            argv,
            cwd=cwd,
            env=_env(index),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=errors,
            start_new_session=True,
        ) as proc,
    ):
        assert proc.stdout is not None
        try:
            while chunk := _read_before(proc.stdout, deadline):
                if total < limit:
                    dest.write(chunk[: limit - total])
                total += len(chunk)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise WorkspaceError(f"git {args[0]} took longer than {timeout:.0f} s and was stopped") from None
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            errors.seek(0)
            _failed(args, errors.read(100_000).decode("utf-8", "replace"), code)
    return total


def _read_before(pipe: IO[bytes], deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or not select.select([pipe], [], [], remaining)[0]:
        raise TimeoutError
    return os.read(pipe.fileno(), 1 << 16)


def _failed(args: tuple[str, ...], output: str, code: int) -> NoReturn:
    detail = redact_text(output.strip())[-2000:] or f"exit code {code}"
    raise WorkspaceError(f"git {args[0]} failed: {detail}")


# --- files the agent could have tampered with ------------------------------------------------


def _quote(value: str) -> str:
    if "\x00" in value or "\n" in value:
        raise WorkspaceError("a git config value contains a line break or NUL")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def checkout_config(remote_url: str, author_name: str, author_email: str) -> str:
    """The whole `.git/config` of a checkout: written fresh before every use, never trusted."""
    fetch = "".join(f"\tfetch = {spec}\n" for spec in CHECKOUT_REFSPECS)
    return (
        "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = false\n"
        "\tlogallrefupdates = true\n"
        f'[remote "origin"]\n\turl = {_quote(remote_url)}\n{fetch}'
        f"[user]\n\tname = {_quote(author_name)}\n\temail = {_quote(author_email)}\n"
    )


def check_gitdir(gitdir: Path) -> None:
    """WorkspaceError unless `gitdir` is a plain folder with no symlink anywhere inside."""
    if gitdir.is_symlink() or not gitdir.is_dir() or has_symlink(gitdir):
        raise WorkspaceError(f"{gitdir} is not a plain .git folder (it was replaced or holds symlinks)")


def restore_gitdir(gitdir: Path, config: str) -> None:
    """Put back the config and info/exclude we wrote; drop files that redirect git elsewhere.

    Refuses (WorkspaceError) a `.git` that is a symlink or holds one: we would write through it.
    """
    check_gitdir(gitdir)
    for name in (
        "commondir",
        "info/attributes",
        "info/grafts",
        "objects/info/alternates",
        "objects/info/http-alternates",
        "config.worktree",
    ):
        remove_path(gitdir / name)
    write_new(gitdir / "config", config)
    lines = "".join(f"{path}\n" for path in (*EXCLUDED, *BYPRODUCTS))
    write_new(real_dir(gitdir / "info") / "exclude", "# AgentFleet: never part of a patch\n" + lines)


# --- checkouts -------------------------------------------------------------------------------


def guard_checkout(path: Path, base_commit: str, config: str) -> None:
    """Before running git on a checkout the agent has had: check it, put our config back."""
    if path.is_symlink() or not _SHA.match(base_commit):
        raise WorkspaceError(f"{path} is not a checkout AgentFleet prepared")
    if config:
        restore_gitdir(path / ".git", config)
    else:
        check_gitdir(path / ".git")


def nested_repositories(path: Path) -> list[str]:
    """Folders below the checkout at `path` that hold a `.git` of their own (a folder, a file or
    a link): repositories git would enter. Found without following a link or running git;
    folders every checkout ignores (BYPRODUCTS) are not searched, since git skips them too."""
    skipped = {entry.strip("/") for entry in BYPRODUCTS if entry.endswith("/")}
    found = []
    for base, dirs, files in os.walk(path):
        if base != str(path) and (".git" in dirs or ".git" in files):
            found.append(Path(base).relative_to(path).as_posix())
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if d != ".git" and d not in skipped]
    return sorted(found)


def _pathspec(excluded: list[str]) -> tuple[str, ...]:
    return ("--", ".", *(f":(top,exclude,literal){path}" for path in excluded))


def _ignore_pattern(path: str) -> str:
    """A .gitignore line matching exactly the folder `path` (relative to the top)."""
    if "\n" in path or "\r" in path:
        raise WorkspaceError(f"the folder name {path!r} holds a line break; rename it")
    escaped = re.sub(r"([\\*?\[])", r"\\\1", path)
    escaped = re.sub(r" (?= *$)", r"\\ ", escaped)  # trailing spaces would be dropped
    return f"/{escaped}/\n"


def stage_worktree(path: Path, index: Path) -> list[str]:
    """Record the whole working tree in `index` (new files, deletions), leaving out EXCLUDED
    and nested repositories; return the nested repositories left out.

    Untracked nested repositories are ignored through `info/exclude` (git never enters an
    ignored folder); tracked paths in them (a submodule's gitlink) are left out by pathspec."""
    nested = nested_repositories(path)
    fd = os.open(path / ".git" / "info" / "exclude", os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
    with os.fdopen(fd, "w", encoding="utf-8") as exclude:
        exclude.writelines(_ignore_pattern(folder) for folder in nested)
    left_out = [p.strip("/") for p in EXCLUDED] + nested
    listed = run_git(path, "ls-files", "-z", "--", *(f":(top,literal){p}" for p in left_out), index=index).stdout
    tracked = [p for p in left_out if any(f == p or f.startswith(p + "/") for f in listed.split("\0") if f)]
    run_git(path, "add", "--all", *_pathspec(tracked), index=index)
    return nested


def write_diff(path: Path, base: str, index: Path, nested: list[str], dest: IO[bytes], limit: int) -> int:
    """The binary patch from `base` to what `index` holds, written to `dest` up to `limit`
    bytes; returns its whole size."""
    pathspec = _pathspec([p.strip("/") for p in EXCLUDED] + nested)
    return stream_git(path, *_DIFF, "--binary", base, *pathspec, dest=dest, limit=limit, index=index)


def diff_stat(path: Path, base: str, index: Path, nested: list[str]) -> str:
    """The diff stat from `base` to what `index` holds, at most STAT_FILES files named."""
    pathspec = _pathspec([p.strip("/") for p in EXCLUDED] + nested)
    return run_git(path, *_DIFF, f"--stat-count={STAT_FILES}", base, *pathspec, index=index).stdout


def changed_files(path: Path, base: str, index: Path, nested: list[str]) -> list[str]:
    """The paths that differ between `base` and what `index` holds (NUL-separated: any name is safe)."""
    pathspec = _pathspec([p.strip("/") for p in EXCLUDED] + nested)
    out = run_git(path, *_DIFF, "--name-only", "-z", base, *pathspec, index=index).stdout
    return [name for name in out.split("\0") if name]


def commit_files(gitdir: Path, files: list[tuple[str, Path]], message: str, author: tuple[str, str]) -> str:
    """A new bare repository at `gitdir` whose one commit (on `main`) holds `files` (name in the
    tree, file on disk) at its root: blobs hashed as they are (no filters, no attributes), so nothing
    in them is ever interpreted. Returns the commit."""
    run_git(gitdir.parent, "init", "--bare", "--quiet", "--template=", "--", str(gitdir))
    listing = "".join(f"{path}\n" for _, path in files)
    shas = run_git(gitdir, "hash-object", "-w", "--no-filters", "--stdin-paths", input=listing).stdout.split()
    tree_lines = "".join(f"100644 blob {sha}\t{name}\n" for (name, _), sha in zip(files, shas, strict=True))
    tree = run_git(gitdir, "mktree", input=tree_lines).stdout.strip()
    name, email = author
    identity = ("-c", f"user.name={name}", "-c", f"user.email={email}")
    commit = run_git(gitdir, *identity, "commit-tree", tree, "-F", "-", input=message).stdout.strip()
    run_git(gitdir, "update-ref", "refs/heads/main", commit)
    run_git(gitdir, "symbolic-ref", "HEAD", "refs/heads/main")
    return commit


class PushRejectedError(WorkspaceError):
    """The remote refused the push: the branch holds commits the push does not build on."""


def commit_and_push(
    path: Path, base: str, index: Path, branch: str, message: str, remote: str, *, force: bool = True
) -> str:
    """Commit what `index` holds on top of `base` and push it to `remote` as branch `branch`; the
    commit. Nothing in the checkout changes: no HEAD, ref or index the agent could have touched is
    used. `force=False` pushes only onto the branch as it was (a fast-forward); PushRejectedError
    when the remote has moved on."""
    tree = run_git(path, "write-tree", index=index).stdout.strip()
    commit = run_git(path, "commit-tree", tree, "-p", base, "-F", "-", input=message).stdout.strip()
    # forced for a chain's first task (the branch is its own, and a retried attempt pushes it again);
    # never for a follow-up, which adds its commit to the branch its chain shares
    refspec = f"{'+' if force else ''}{commit}:refs/heads/{branch}"
    pushed = run_git(path, "push", "--quiet", "--porcelain", "--", remote, refspec, check=False)
    if pushed.returncode:
        said = pushed.stdout + pushed.stderr
        if not force and re.search(r"\[rejected\]|\(fetch first\)|non-fast-forward|\[remote rejected\]", said):
            raise PushRejectedError(redact_text(said.strip())[-1000:])
        _failed(("push",), said, pushed.returncode)
    return commit


def commit_patch(path: Path, base: str, patch: Path, message: str) -> str:
    """A new commit on `base` whose tree is `base`'s with `patch` applied, made in the repository
    at `path` without touching its working tree or index: the patch is applied to an index of our
    own (`git apply --cached`: no filters, no hooks, no attributes file), then written as objects.
    Paths outside the tree, under `.git` or beyond a symlink are refused by git. WorkspaceError
    when the patch does not apply."""
    attributes = ("-c", "core.attributesFile=/dev/null")
    with tempfile.TemporaryDirectory(prefix="agentfleet-apply-") as tmp:
        index = Path(tmp) / "index"
        run_git(path, "read-tree", base, index=index)
        run_git(path, *attributes, "apply", "--cached", "--whitespace=nowarn", "--", str(patch), index=index)
        tree = run_git(path, "write-tree", index=index).stdout.strip()
    return run_git(path, "commit-tree", tree, "-p", base, "-F", "-", input=message).stdout.strip()
