"""The setup step of a workspace: the task's `options.setup`, or each repository's
`.agentfleet/setup.sh`, or for a repository with neither that is recognisably a Python or Node
project the default setup (a `.venv` with the project, its test extras and pytest; `npm ci`). Each
runs (in the sandbox, by the caller's runner, with network by default) once per hash of the script
and the lockfiles at the root of its checkouts. A marker per hash, outside the workspace, records
the run with the checkouts' tokens, so a checkout made afresh runs setup again; its results
(ignored files such as `.venv/`) stay in the workspace for the next task. A failed default setup
is reported and the agent works without it; a failed setup someone wrote fails the task.
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
    where: str  # "options.setup", "<folder>/.agentfleet/setup.sh" or "<folder>: default setup (…)"
    cwd: Path
    script: str
    checkouts: tuple[Path, ...]
    required: bool = True
    """A failure fails the task; the default setup's only says so."""


PYTHON_MARKERS = ("pyproject.toml", "setup.py", "setup.cfg", "requirements.txt")
NODE_MARKERS = ("package.json",)
DEFAULT_PYTHON_SETUP = r"""# AgentFleet's default Python setup (the repository has no .agentfleet/setup.sh):
# a .venv with the project, its test extras and pytest, first on the agent's PATH.
# AGENTFLEET_DEFAULT_SETUP=false turns it off.
set -eu
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
[ -x .venv/bin/python ] || python3 -m venv .venv
py=.venv/bin/python
for req in requirements.txt requirements-dev.txt requirements-test.txt requirements_test.txt \
    test-requirements.txt dev-requirements.txt requirements/test.txt requirements/dev.txt; do
  if [ -f "$req" ]; then echo "+ pip install -r $req"; "$py" -m pip install -q -r "$req"; fi
done
plan=$("$py" - <<'PLAN'
import configparser, os
wanted = ("test", "tests", "testing")
extras, groups, installable = set(), [], os.path.exists("setup.py")
if os.path.exists("pyproject.toml"):
    try:
        import tomllib
        with open("pyproject.toml", "rb") as fh:
            data = tomllib.load(fh)
    except Exception:
        data = {}
    project, poetry = data.get("project") or {}, (data.get("tool") or {}).get("poetry") or {}
    installable = installable or bool(project) or "build-system" in data or bool(poetry)
    extras |= set(project.get("optional-dependencies") or {}) | set(poetry.get("extras") or {})
    for name, items in (data.get("dependency-groups") or {}).items():
        if name in wanted + ("dev",):
            groups += [item for item in items if isinstance(item, str)]
if os.path.exists("setup.cfg"):
    cfg = configparser.ConfigParser()
    cfg.read("setup.cfg")
    installable = installable or cfg.has_section("metadata") or cfg.has_section("options")
    if cfg.has_section("options.extras_require"):
        extras |= set(cfg.options("options.extras_require"))
print("install" if installable else "skip")
print(",".join(sorted(e for e in extras if e in wanted)))
print("\n".join(groups))
PLAN
)
install=$(printf '%s\n' "$plan" | sed -n 1p)
extras=$(printf '%s\n' "$plan" | sed -n 2p)
printf '%s\n' "$plan" | sed -n '3,$p' | grep . > .venv/agentfleet-groups.txt || true
if [ "$install" = install ]; then
  echo "+ pip install -e .${extras:+[$extras]}"
  "$py" -m pip install -q -e ".${extras:+[$extras]}"
fi
if [ -s .venv/agentfleet-groups.txt ]; then
  echo "+ pip install the test dependency groups"; "$py" -m pip install -q -r .venv/agentfleet-groups.txt
fi
"$py" -c "import pytest" 2>/dev/null || { echo "+ pip install pytest"; "$py" -m pip install -q pytest; }
"$py" -m pytest --version
"""
DEFAULT_NODE_SETUP = r"""# AgentFleet's default Node setup (the repository has no .agentfleet/setup.sh):
# its packages in node_modules, whose .bin comes first on the agent's PATH.
# AGENTFLEET_DEFAULT_SETUP=false turns it off.
set -eu
command -v npm >/dev/null || { echo "npm is not installed in the sandbox: no Node setup"; exit 0; }
if [ -f package-lock.json ] || [ -f npm-shrinkwrap.json ]; then
  echo "+ npm ci"; npm ci --no-audit --no-fund
else
  echo "+ npm install"; npm install --no-audit --no-fund
fi
"""


def default_setup(checkout: Path) -> tuple[str, str] | None:
    """(kind, script) of the default setup for a checkout with no setup of its own: Python when a
    Python project's files are at its root, else Node for a package.json; None for neither."""

    def has(names: tuple[str, ...]) -> bool:
        return any((checkout / name).is_file() and not (checkout / name).is_symlink() for name in names)

    if has(PYTHON_MARKERS):
        return "Python", DEFAULT_PYTHON_SETUP
    if has(NODE_MARKERS):
        return "Node", DEFAULT_NODE_SETUP
    return None


def run_setups(
    task: Task, settings: Settings, root: Path, checkouts: list[Path], emit: Emit, run_setup: RunSetup | None
) -> SetupAction:
    """Run each setup step whose script or lockfiles changed since it last ran in these checkouts."""
    steps = _setup_steps(task, root, checkouts, settings.default_setup)
    if not steps or run_setup is None:
        reason = {"reason": "no setup runner here"} if steps else {}
        emit(EventKind.WORKSPACE, {"step": "setup", "action": "none", **reason})
        return "none"
    cache = settings.setup_cache_dir / task.workspace_id
    actions = [_setup_once(step, root, cache, emit, run_setup) for step in steps]
    return "ran" if "ran" in actions else "reused"


def _setup_steps(task: Task, root: Path, checkouts: list[Path], defaults: bool) -> list[_SetupStep]:
    """`options.setup` once at the root ('' or blank: none at all), or else each repository's own
    `.agentfleet/setup.sh`, or its default setup (when `defaults`)."""
    option = task.request.options.setup
    if option is not None:
        return [_SetupStep("options.setup", root, option, tuple(checkouts))] if option.strip() else []
    steps = []
    for checkout in checkouts:
        script = checkout / SETUP_SCRIPT
        if not script.is_file() or script.is_symlink():
            found = default_setup(checkout) if defaults and not script.is_symlink() else None
            if found is not None:
                kind, text = found
                where = f"{checkout.relative_to(root).as_posix() or '.'}: default {kind} setup"
                steps.append(_SetupStep(where, checkout, text, (checkout,), required=False))
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
    if run.exit_code != 0 and not step.required:
        emit(EventKind.WORKSPACE, {**event, "action": "failed", "exit_code": run.exit_code, "duration_s": duration})
        emit(
            EventKind.LOG,
            {
                "message": f"the {step.where} failed (exit code {run.exit_code}); the agent works without it. "
                "Add .agentfleet/setup.sh to the repository, or give the task a setup",
                "output": run.output[-2000:],
            },
        )
        return "ran"
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
