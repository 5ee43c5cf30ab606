"""Real git repositories for tests, benchmarks, the evaluation suite and `make demo`: made with
git itself, with a fixed identity and none of the user's git configuration.

    python -m agentfleet.testing.repos DEST --from FOLDER   # DEST: FOLDER's files in one commit on main
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    """`git <args>` in `cwd`; its stdout, stripped (CalledProcessError when it fails)."""
    env = {**os.environ, **GIT_ENV}
    proc = subprocess.run(
        ["git", "-c", "safe.directory=*", "-c", "commit.gpgSign=false", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def make_repo(path: Path, files: Mapping[str, str], message: str = "initial") -> Path:
    """A real git repository at `path` with `files` (name → text) committed on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    commit_files(path, files, message)
    return path


def repo_from(folder: Path, dest: Path, message: str = "initial") -> Path:
    """A real git repository at `dest` holding a copy of `folder` (links kept) in one commit on main."""
    shutil.copytree(folder, dest, symlinks=True, dirs_exist_ok=True)
    return make_repo(dest, {}, message)


def commit_files(path: Path, files: Mapping[str, str], message: str) -> str:
    """Write `files`, commit everything in the tree; the new commit."""
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", message)
    return git(path, "rev-parse", "HEAD")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agentfleet.testing.repos", description=__doc__)
    parser.add_argument("dest", type=Path, help="where the repository is made")
    parser.add_argument("--from", dest="folder", type=Path, required=True, help="the files it holds")
    parser.add_argument("--message", default="initial")
    args = parser.parse_args(argv)
    print(repo_from(args.folder, args.dest, args.message))


if __name__ == "__main__":
    main()
