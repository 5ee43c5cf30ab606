"""Plants that make git run a program: what an agent or a repository can write into a checkout.

Each plant makes some git command run `payload`, a script that records that it ran (and as
whom) in a marker folder outside the workspace, and prints every LLM_API_KEY it can find in
/proc. A test plants one, runs the code under test, and asserts that no marker appeared and no
key was printed.
"""

from __future__ import annotations

import stat
from pathlib import Path

SECRET_KEY = "sk-hostile-test-key-0123456789"

PLANTS = ("fsmonitor", "include", "diff_external", "clean_filter", "textconv", "hook")
"""Every way below that git can be made to run a program from a checkout."""


def marker_dir(tmp_path: Path) -> Path:
    """A folder anyone may write to, outside every workspace: a payload that runs leaves a file here."""
    markers = tmp_path / "markers"
    markers.mkdir(exist_ok=True)
    markers.chmod(0o777)
    return markers


def payload(gitdir: Path, markers: Path, name: str) -> Path:
    """An executable script inside `gitdir` that leaves `markers/<name>` when run."""
    script = gitdir / f"payload-{name}.sh"
    script.write_text(
        "#!/bin/sh\n"
        f"id -u > '{markers}/{name}' 2>/dev/null\n"
        "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep LLM_API_KEY >&2\n"
        # What each kind of program is expected to do, so git goes on as if nothing happened:
        'case "$0" in *clean*|*textconv*) cat "$@" 2>/dev/null || cat ;; esac\n'
        "exit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def plant(repo: Path, name: str, markers: Path) -> None:
    """Plant attack `name` (one of PLANTS) in the checkout at `repo`."""
    gitdir = repo / ".git"
    config = gitdir / "config"
    script = payload(gitdir, markers, name)
    with config.open("a") as fh:
        if name == "fsmonitor":
            fh.write(f"[core]\n\tfsmonitor = {script}\n")
        elif name == "include":
            included = gitdir / "included.cfg"
            included.write_text(f"[core]\n\tfsmonitor = {script}\n")
            fh.write(f"[include]\n\tpath = {included}\n")
        elif name == "diff_external":
            fh.write(f"[diff]\n\texternal = {script}\n")
        elif name == "clean_filter":
            fh.write(f'[filter "evil"]\n\tclean = {script}\n\tsmudge = {script}\n')
            _attributes(repo, "* filter=evil\n")
        elif name == "textconv":
            fh.write(f'[diff "evil"]\n\ttextconv = {script}\n')
            _attributes(repo, "* diff=evil\n")
        elif name == "hook":
            hooks = gitdir / "hooks"
            hooks.mkdir(exist_ok=True)
            for hook in ("post-index-change", "pre-commit", "post-checkout", "reference-transaction"):
                _copy_exec(script, hooks / hook)
        else:
            raise ValueError(f"unknown plant {name!r}")


def _attributes(repo: Path, text: str) -> None:
    (repo / ".gitattributes").write_text(text)


def _copy_exec(script: Path, dest: Path) -> None:
    dest.write_text(script.read_text())
    dest.chmod(0o755)


def fired(markers: Path) -> list[str]:
    """The payloads that ran."""
    return sorted(p.name for p in markers.iterdir())
