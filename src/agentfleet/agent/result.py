"""The result of a task's work: what was done (the files changed, the checks run, the tool calls
made), the patch kept as an artifact (when under the size limit), the diff stat, the branch when one
is pushed, and notes on what the patch leaves out."""

from __future__ import annotations

import tempfile
from pathlib import Path

from agentfleet.agent.answers import asks_for_change
from agentfleet.agent.loop import Outcome
from agentfleet.agent.workspace import PreparedWorkspace, RepoCheckout, push_branch, write_changes
from agentfleet.errors import WorkspaceError
from agentfleet.followups import commit_message
from agentfleet.ports import ArtifactStore
from agentfleet.tasks import Emit, EventKind, RepoOutcome, Task, TaskResult


def finish(
    task: Task,
    workspace: PreparedWorkspace,
    artifacts: ArtifactStore,
    outcome: Outcome,
    record: Emit,
    max_patch_bytes: int,
) -> tuple[TaskResult, str | None]:
    """The result: the patch kept as an artifact (when under `max_patch_bytes`), the diff stat,
    the branch when pushed (after the patch is kept: a push that fails loses nothing), and notes on
    what the patch leaves out."""
    multi = len(workspace.repos) > 1
    stats, notes, total, changed, touched = [], [], 0, [], []
    with tempfile.NamedTemporaryFile(prefix="agentfleet-patch-") as patch:
        for repo in workspace.repos:
            name = repo.path.name
            mark = patch.tell()
            patch.write(f"# repository: {name}\n".encode() if multi else b"")
            changes = write_changes(repo, patch, limit=max(max_patch_bytes - total, 0))
            total += changes.patch_bytes
            if changes.nested:
                notes.append(_nested_note(name if multi else "", changes.nested))
            if not changes.patch_bytes:
                patch.seek(mark)
                patch.truncate()
                continue
            stats.append(f"# {name}\n{changes.stat}" if multi else changes.stat)
            changed += [f"{name}/{path}" if multi else path for path in changes.files]
            touched.append(repo)
        patch.flush()
        too_big = total > max_patch_bytes
        key = None
        if total and not too_big:
            key = artifacts.put_file(f"tasks/{task.id}/patch.diff", Path(patch.name))
    pushed, push_error = _push(task, touched, record) if task.request.options.push_branch else ({}, None)
    branch = task.branch if pushed else None
    error = outcome.error or push_error
    if too_big:
        notes.append(_too_big_note(total, max_patch_bytes, branch))
        error = error or (None if branch else notes[-1])
    for note in notes:
        record(EventKind.LOG, {"message": note})
    result = TaskResult(
        summary=outcome.summary or "(the model gave no final answer)",
        patch=key,
        diff_stat="\n".join(stats).strip(),
        changed=changed,
        change_requested=asks_for_change(task.request.query),
        checks=outcome.checks,
        tool_calls=outcome.calls,
        branch=branch,
        artifacts=[key] if key else [],
        notes=notes,
        usage=outcome.usage,
        repos=[
            RepoOutcome(name=r.key, base_commit=r.base_commit, changed=r in touched, commit=pushed.get(r.key))
            for r in workspace.repos
        ],
    )
    return result, error


def _push(task: Task, repos: list[RepoCheckout], record: Emit) -> tuple[dict[str, str], str | None]:
    """Push each changed repository's commit to the task's branch: {key: commit}, and the reason the
    first push that failed did (the ones after it are not tried). A follow-up never forces."""
    pushed: dict[str, str] = {}
    for repo in repos:
        try:
            pushed[repo.key] = push_branch(repo, task.branch, commit_message(task), force=task.root_id is None)
        except WorkspaceError as exc:
            record(EventKind.ERROR, {"message": str(exc), "repo": repo.url})
            return pushed, str(exc)
        record(EventKind.LOG, {"message": f"pushed branch {task.branch}", "repo": repo.url, "commit": pushed[repo.key]})
    return pushed, None


def _nested_note(repo: str, nested: list[str]) -> str:
    where = f" of {repo}" if repo else ""
    shown = ", ".join(nested[:10]) + (f" and {len(nested) - 10} more" if len(nested) > 10 else "")
    return (
        f"left out of the patch{where}: nested repositories {shown} (a folder with a .git of its own is "
        "another repository; commit changes there upstream, or add it to .gitignore)"
    )


def _too_big_note(size: int, limit: int, branch: str | None) -> str:
    where = f"; the change is on branch {branch}" if branch else ""
    return (
        f"the patch is {size:,} bytes, over the limit of {limit:,} (AGENTFLEET_MAX_PATCH_BYTES), so it was not "
        f"kept{where}. Large or generated files usually belong in .gitignore; the diff stat shows which files"
    )
