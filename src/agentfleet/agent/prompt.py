"""The agent's first message for a task, built from the prepared workspace and the profile."""

from __future__ import annotations

import itertools

from agentfleet.agent.acceptance import CheckSpec
from agentfleet.agent.answers import task_kind
from agentfleet.agent.excerpt import excerpt
from agentfleet.agent.followup import chain_section
from agentfleet.agent.memory import RepositoryMemory
from agentfleet.agent.profiles import TASK_HINTS, ModelProfile
from agentfleet.agent.workspace import PreparedWorkspace, task_input_names
from agentfleet.runtime.filewalk import entry, iter_files
from agentfleet.tasks import Task

EXCERPT_WALK = 5000
"""The most files the prompt's excerpt picks its files from."""


def excerpt_for(task: Task, workspace: PreparedWorkspace, profile: ModelProfile) -> str:
    """What the prompt shows of the files themselves: for a profile and a kind of task that want it."""
    if not profile.excerpt_chars or task_kind(task.request.query) not in profile.excerpt_kinds:
        return ""
    walked = itertools.islice(iter_files(workspace.root, workspace.root), EXCERPT_WALK)
    return excerpt(workspace.root, walked, profile.excerpt_chars)


def build_prompt(
    task: Task,
    workspace: PreparedWorkspace,
    checks: list[CheckSpec],
    profile: ModelProfile,
    shown: str = "",
    remembered: RepositoryMemory | None = None,
) -> str:
    """The task's first message: the query, where things are, the checks, the files (and what the
    profile wants shown of them), what the repository remembers, the follow-up chain, a hint."""
    lines = [task.request.query.strip(), "", "Workspace:"]
    for repo in workspace.repos:
        where = repo.path.relative_to(workspace.root).as_posix() or "."
        lines.append(f"- {where}: {repo.url} at {repo.base_commit[:12]}")
    inputs = workspace.root / ".agentfleet" / "inputs"
    if workspace.scratch:
        lines.append("Input files (at the workspace root): " + ", ".join(task_input_names(task)))
    elif inputs.is_dir():
        lines.append("Input files: " + ", ".join(f".agentfleet/inputs/{p.name}" for p in sorted(inputs.iterdir())))
    for spec in checks:
        where = "" if spec.where == "." else f" (run in {spec.where})"
        lines.append(f"Acceptance check{where}: `{spec.command}` must pass; the task is done only when it does.")
    most = profile.max_listed_files
    files = [entry(workspace.root, f) for f in itertools.islice(iter_files(workspace.root, workspace.root), most + 1)]
    if files and most:
        more = "\n- … (more files: list them)" if len(files) > most else ""
        lines += ["", "Files:", *(f"- {f}" for f in files[:most])]
        lines[-1] += more
    if shown:
        lines += ["", "Start of the main files:", shown]
    if remembered is not None:
        lines += remembered.prompt_lines()
    lines += chain_section(task)
    hint = TASK_HINTS.get(task_kind(task.request.query)) if profile.task_hints else None
    if hint:
        lines += ["", f"Hint: {hint}"]
    return "\n".join(lines)
