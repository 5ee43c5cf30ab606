"""The setup step of a workspace: the task's `options.setup`, or each repository's
`.agentfleet/setup.sh`, run (in the sandbox, by the caller's runner) once per hash of the script and
the lockfiles at the root of its checkouts. A marker per hash, outside the workspace, records the
run with the checkouts' tokens, so a checkout made afresh runs setup again; its results (ignored
files such as `.venv/`) stay in the workspace for the next task.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentfleet.agent.mirrors import checkout_token
from agentfleet.errors import WorkspaceError
from agentfleet.runtime.files import open_regular, read_small
from agentfleet.settings import Settings
from agentfleet.tasks import Emit, EventKind, Task

SETUP_SCRIPT = ".agentfleet/setup.sh"
LOCKFILES = (
    *("requirements*.txt", "poetry.lock", "uv.lock", "Pipfile", "Pipfile.lock", "pyproject.toml", "setup.py"),
    *("setup.cfg", "package.json", "package-lock.json", "npm-shrinkwrap.json", "yarn.lock", "pnpm-lock.yaml"),
    *("bun.lockb", "Cargo.toml", "Cargo.lock", "go.mod", "go.sum", "Gemfile", "Gemfile.lock", "composer.json"),
    *("composer.lock", ".python-version", ".nvmrc", ".tool-versions"),
)
"""Files at a checkout's root whose contents decide whether setup must run again."""
OUTPUT_KEEP = 4000
MAX_SETUP_SCRIPT_BYTES = 1 << 20
SetupAction = Literal["ran", "reused", "none"]


@dataclass(frozen=True)
class SetupRun:
    exit_code: int
    output: str


RunSetup = Callable[[Path, str], SetupRun]
"""Runs a setup script in a folder (in the sandbox): how it ended."""


@dataclass(frozen=True)
class _SetupStep:
    where: str  # "options.setup" or "<folder>/.agentfleet/setup.sh"
    cwd: Path
    script: str
    checkouts: tuple[Path, ...]


def run_setups(
    task: Task, settings: Settings, root: Path, checkouts: list[Path], emit: Emit, run_setup: RunSetup | None
) -> SetupAction:
    """Run each setup step whose script or lockfiles changed since it last ran in these checkouts."""
    steps = _setup_steps(task, root, checkouts)
    if not steps or run_setup is None:
        reason = {"reason": "no setup runner here"} if steps else {}
        emit(EventKind.WORKSPACE, {"step": "setup", "action": "none", **reason})
        return "none"
    cache = settings.setup_cache_dir / task.workspace_id
    actions = [_setup_once(step, root, cache, emit, run_setup) for step in steps]
    return "ran" if "ran" in actions else "reused"


def _setup_steps(task: Task, root: Path, checkouts: list[Path]) -> list[_SetupStep]:
    """`options.setup` once at the root, or else each repository's own `.agentfleet/setup.sh`."""
    if task.request.options.setup:
        return [_SetupStep("options.setup", root, task.request.options.setup, tuple(checkouts))]
    steps = []
    for checkout in checkouts:
        script = checkout / SETUP_SCRIPT
        if not script.is_file() or script.is_symlink():
            continue
        where = (checkout.relative_to(root) / SETUP_SCRIPT).as_posix()
        data = read_small(script, MAX_SETUP_SCRIPT_BYTES)
        if data is None:
            raise WorkspaceError(f"{where} is not a regular file of at most {MAX_SETUP_SCRIPT_BYTES:,} bytes")
        steps.append(_SetupStep(where, checkout, data.decode("utf-8", "replace"), (checkout,)))
    return steps


def setup_hash(step: _SetupStep, root: Path) -> str:
    """sha256 over the script and the lockfiles at the root of each of the step's checkouts."""
    digest = hashlib.sha256()

    def feed(name: str, data: bytes) -> None:
        digest.update(f"{name}\0{len(data)}\0".encode() + data)

    feed(step.where, step.script.encode())
    for checkout in step.checkouts:
        for name in sorted(os.listdir(checkout)):
            fh = open_regular(checkout / name) if _is_lockfile(name) else None
            if fh is not None:
                with fh:
                    size = os.fstat(fh.fileno()).st_size
                    digest.update(f"{(checkout.relative_to(root) / name).as_posix()}\0{size}\0".encode())
                    while chunk := fh.read(1 << 20):  # streamed: a lockfile may be large
                        digest.update(chunk)
    return digest.hexdigest()


def _is_lockfile(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in LOCKFILES)


def _setup_once(step: _SetupStep, root: Path, cache: Path, emit: Emit, run_setup: RunSetup) -> SetupAction:
    digest = setup_hash(step, root)
    token = "+".join(checkout_token(checkout) for checkout in step.checkouts)
    marker = cache / f"{digest}.json"
    event = {"step": "setup", "hash": digest, "script": step.where}
    if _read_marker(marker).get("token") == token:
        emit(EventKind.WORKSPACE, {**event, "action": "reused"})
        return "reused"
    _forget(cache, step.where)  # a crash or failure from here on leaves no marker for this step
    started = time.monotonic()
    run = run_setup(step.cwd, step.script)
    duration = round(time.monotonic() - started, 3)
    if run.exit_code != 0:
        raise WorkspaceError(
            f"setup ({step.where}) failed with exit code {run.exit_code}; fix the script or the "
            f"lockfiles. Last output:\n{run.output[-2000:]}"
        )
    record = {
        "script": step.where,
        "token": token,
        "exit_code": run.exit_code,
        "output": run.output[-OUTPUT_KEEP:],
        "duration_s": duration,
    }
    cache.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(f".tmp-{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, marker)
    emit(EventKind.WORKSPACE, {**event, "action": "ran", "duration_s": duration})
    return "ran"


def _read_marker(marker: Path) -> dict[str, Any]:
    try:
        data = json.loads(marker.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _forget(cache: Path, where: str) -> None:
    for marker in cache.glob("*.json"):
        if _read_marker(marker).get("script") == where:
            marker.unlink(missing_ok=True)
