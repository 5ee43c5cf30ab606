"""A follow-up task inside the agent: its checkout continued from the chain's result, and the
chain as its prompt shows it.

A follow-up's repository starts at a commit the remote has (its parent's pushed commit, or the
chain's first base) and then gets, one commit each, the patches of the chain's tasks that were
not pushed (`RepoStart`). Each patch is an artifact the agent of an earlier task produced, so it
is hostile: it is applied by the host's one hardened git (`runtime.git.commit_patch`: to an index
of its own, never to the working tree, no filters or hooks), after which the checkout is made clean
at the result like any other.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from agentfleet.agent.mirrors import sync_checkout
from agentfleet.errors import WorkspaceError
from agentfleet.ports import ArtifactStore
from agentfleet.runtime import git
from agentfleet.tasks import Emit, EventKind, PatchStep, Task

CHAIN_PROMPT_CHARS = 12_000
"""The most characters the prompt's chain section takes (the oldest entries go first)."""
PART_MARK = b"# repository: "
"""How a multi-repository patch starts each repository's section (agent/result.py writes it)."""


def continue_chain(
    path: Path,
    mirror: Path,
    commit: str,
    steps: list[PatchStep],
    artifacts: ArtifactStore,
    checkout: tuple[str, Path],
    emit: Emit,
) -> str:
    """Commit each step's patch on top of `commit` in the checkout at `path`, then make the
    checkout clean at the last one; that commit. `checkout`: its config and host index."""
    config, index = checkout
    for step in steps:
        try:
            data = artifacts.get_bytes(step.patch)
        except KeyError:
            raise WorkspaceError(
                f"the patch of task {step.task_id} ({step.patch}) is gone; the follow-up cannot start from it"
            ) from None
        part = patch_part(data, step.part)
        if not part.strip():
            continue
        with tempfile.NamedTemporaryFile(prefix="agentfleet-chain-") as fh:
            fh.write(part)
            fh.flush()
            try:
                commit = git.commit_patch(path, commit, Path(fh.name), step.message)
            except WorkspaceError as exc:
                raise WorkspaceError(f"the patch of task {step.task_id} does not apply to its base: {exc}") from None
        emit(EventKind.WORKSPACE, {"step": "followup", "applied": step.task_id, "commit": commit})
    if steps:
        sync_checkout(path, mirror, commit, config, index)
    return commit


def patch_part(patch: bytes, part: str) -> bytes:
    """The section of a multi-repository patch for the repository `part` ('': the whole patch)."""
    if not part:
        return patch
    sections: dict[str, list[bytes]] = {}
    current: list[bytes] | None = None
    for line in patch.splitlines(keepends=True):
        if line.startswith(PART_MARK):  # a git diff line never starts so: its lines start with diff, +, -, ' '
            current = sections.setdefault(line[len(PART_MARK) :].strip().decode("utf-8", "replace"), [])
        elif current is not None:
            current.append(line)
    return b"".join(sections.get(part, []))


def chain_section(task: Task, limit: int = CHAIN_PROMPT_CHARS) -> list[str]:
    """The prompt's lines on the chain so far: each earlier task's query, final answer and diff stat,
    oldest first, at most `limit` characters (the oldest left out first). None for a first task."""
    if task.followup is None or not task.followup.chain:
        return []
    blocks = []
    for entry in task.followup.chain:
        block = [f"- Task {entry.task_id} ({entry.status.value}) was asked: {entry.query.strip()}"]
        block.append(f"  Its answer: {entry.summary.strip() or '(none)'}")
        stat = entry.diff_stat.strip()
        block.append("  It changed:\n" + _indent(stat) if stat else "  It changed no files.")
        blocks.append("\n".join(block))
    left_out = task.followup.earlier
    while len(blocks) > 1 and sum(len(b) + 1 for b in blocks) > limit:
        blocks.pop(0)
        left_out += 1
    if len(blocks[0]) > limit:
        blocks[0] = blocks[0][: limit - 1] + "…"
    head = "This task follows up earlier ones on the same repositories; the checkout already holds their changes."
    more = [f"({left_out} earlier tasks of the chain are not shown.)"] if left_out else []
    return ["", head, "Earlier tasks, oldest first:", *more, *blocks]


def _indent(text: str) -> str:
    return "\n".join(f"    {line}" for line in text.splitlines())
