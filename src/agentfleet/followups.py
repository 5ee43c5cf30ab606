"""Follow-up tasks: a new query that continues an ended task's result on the same repositories.

A follow-up is a new Task with `parent_id` (the task it follows), `root_id` (its chain's first
task) and `followup`, fixed here when it is created: the chain so far as its prompt shows it
(each earlier query, final answer and diff stat, clipped) and where each repository starts. A
repository the parent pushed starts at the parent's pushed commit; one it did not push starts
where the parent started, plus the parent's patch (each task's patch one commit, so a later push
puts one commit per task on the branch). All tasks of a chain push to the first one's branch
(`Task.branch`), a follow-up only on top of the branch as it is (agent/result.py).
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agentfleet.errors import ConflictError, InvalidRequestError, describe_validation_error
from agentfleet.tasks import (
    ChainEntry,
    Followup,
    FollowupRequest,
    PatchStep,
    RepoStart,
    Task,
    TaskRequest,
)

CHAIN_ENTRIES = 8
"""The most earlier tasks a follow-up carries (the newest ones); `Followup.earlier` counts the rest."""
ENTRY_CHARS = 1500
"""The most characters of each earlier query, answer and diff stat a follow-up carries."""


def commit_message(task: Task) -> str:
    """The message of the commit holding a task's change (pushed, or rebuilt from its patch)."""
    first = task.request.query.strip().splitlines()[0][:72]
    return f"AgentFleet task {task.id}: {first}"


def followup_task(parent: Task, asked: FollowupRequest, context: dict[str, Any]) -> Task:
    """The follow-up of `parent` that `asked` describes, not yet stored. ConflictError when the
    parent has not ended, or ended with a change that was neither kept nor pushed;
    InvalidRequestError when the request with the parent's fields does not validate."""
    if not parent.status.final:
        raise ConflictError(
            f"task {parent.id} is {parent.status.value}; a follow-up starts from a task's result, so wait "
            "until it has ended (agentfleet watch), or cancel it"
        )
    chain = [*(parent.followup.chain if parent.followup else []), _entry(parent)]
    earlier = (parent.followup.earlier if parent.followup else 0) + max(len(chain) - CHAIN_ENTRIES, 0)
    return Task(
        request=_request(parent, asked, context),
        parent_id=parent.id,
        root_id=parent.root_id or parent.id,
        followup=Followup(chain=chain[-CHAIN_ENTRIES:], earlier=earlier, repos=_starts(parent)),
    )


def _request(parent: Task, asked: FollowupRequest, context: dict[str, Any]) -> TaskRequest:
    """The parent's request with the new query, and the options `asked` gives over the parent's."""
    options = parent.request.options
    if asked.options is not None:
        given = asked.options.model_fields_set
        options = options.model_copy(update={name: getattr(asked.options, name) for name in given})
    body = {
        **parent.request.model_dump(),
        "query": asked.query,
        "options": options.model_dump(),
        "idempotency_key": asked.idempotency_key,
    }
    try:
        return TaskRequest.model_validate(body, context=context)
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_error(exc)) from None


def _clip(text: str) -> str:
    return text if len(text) <= ENTRY_CHARS else text[: ENTRY_CHARS - 1] + "…"


def _entry(parent: Task) -> ChainEntry:
    summary = parent.result.summary if parent.result else ""
    if parent.error:
        summary = f"{summary} (it ended {parent.status.value}: {parent.error})".strip()
    return ChainEntry(
        task_id=parent.id,
        status=parent.status,
        query=_clip(parent.request.query),
        summary=_clip(summary),
        diff_stat=_clip(parent.result.diff_stat if parent.result else ""),
    )


def _starts(parent: Task) -> dict[str, RepoStart]:
    """Where each repository of the follow-up starts: from the parent's result, or (a parent that
    left none: failed before its work, cancelled) where the parent itself started."""
    before = parent.followup.repos if parent.followup else {}
    result = parent.result
    if result is None or not result.repos:
        if result is not None and (result.patch or result.branch):
            raise ConflictError(f"task {parent.id} does not record where its change lies; submit a new task")
        return dict(before)
    multi = len(result.repos) > 1
    starts = {}
    for outcome in result.repos:
        if outcome.commit:  # pushed: the remote has the parent's whole result
            starts[outcome.name] = RepoStart(commit=outcome.commit)
            continue
        scratch = parent.request.primary_repo is None  # its base is made afresh from the files each time
        start = before.get(outcome.name) or RepoStart(commit=None if scratch else outcome.base_commit)
        if outcome.changed:
            if result.patch is None:
                raise ConflictError(
                    f"task {parent.id} changed files but its patch was not kept (over AGENTFLEET_MAX_PATCH_BYTES) "
                    "and not pushed, so a follow-up cannot start from it; submit a new task"
                )
            step = PatchStep(
                task_id=parent.id,
                patch=result.patch,
                part=outcome.name if multi else "",
                message=commit_message(parent),
            )
            start = start.model_copy(update={"patches": [*start.patches, step]})
        starts[outcome.name] = start
    return starts
