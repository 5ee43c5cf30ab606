"""The task model: what a user asks for, what AgentFleet records while it works, what it returns.

`TaskRequest` is the HTTP body (and the Pub/Sub message a user may publish). Validation
needs to know whether local repositories are allowed; pass it as pydantic validation context
(`Settings.validation_context()`). Every entry point that takes input from outside (HTTP, Pub/Sub,
CLI) passes one; a model built in code without a context is trusted, as data read back from a store.

One unit, over ~300 lines: the task model and its validation, read together by every entry point and
store (names.py holds the naming rules it uses).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from agentfleet.names import (
    check_repo_url,
    input_file_key,
    normalize_repo_url,
    redact_url,
    repo_dirname_of,
    workspace_id,
)

MAX_QUERY_CHARS = 32_000
SCRATCH_PREFIX = "scratch-"
"""The workspace of a task with input files and no repository: its own, made afresh (`scratch-<task id>`)."""
DEFAULT_MAX_REPOS = 10
DEFAULT_MAX_FILES = 50
TRUSTED: dict[str, Any] = {"allow_local_repos": True, "max_repos": 10_000, "max_files": 10_000, "trusted": True}
"""Validation context for data AgentFleet itself stored (already validated on the way in)."""
STORED: dict[str, Any] = {**TRUSTED, "stored": True}
"""TRUSTED, for a task read back from its store: the repository checks that depend on the file system
(two repositories one, or sharing a folder: a local path's normal form resolves it, an lstat per part)
are not made again. They were made when it was submitted; a symlink changed since must not make it
unreadable."""

_REF_OK = re.compile(r"^[A-Za-z0-9._/@{}^~+-]{1,200}$")


def utcnow() -> datetime:
    return datetime.now(UTC)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_text(value: Any, where: str = "body") -> None:
    """ValueError for a string anywhere in `value` that is not valid Unicode (a lone surrogate,
    which JSON's \\ud800 escapes can carry and no store can keep)."""
    stack = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"{path} is not valid Unicode text (it holds a lone surrogate such as \\ud800)"
                ) from None
        elif isinstance(item, dict):
            stack.extend((v, f"{path}.{k}" if path != "body" else str(k)) for k, v in item.items())
            stack.extend((k, f"{path} (a key)") for k in item)
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))


# --- request ---------------------------------------------------------------------------------


def check_query(value: str) -> str:
    if not value.strip():
        raise ValueError("query is empty; say what the agent should do")
    if len(value) > MAX_QUERY_CHARS:
        raise ValueError(f"query is {len(value)} characters; the limit is {MAX_QUERY_CHARS}")
    return value


class McpServerSpec(_Strict):
    """A shared MCP server the agent connects to over streamable HTTP: one the deployment
    configured (by `name` alone), or a `url` the deployment allows (AGENTFLEET_MCP_ALLOWED_URLS)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,39}$")
    url: str | None = Field(None, pattern=r"^https?://[^\s@/]+(/\S*)?$", max_length=2000)


def check_mcp_servers(specs: list[McpServerSpec], configured: list[str], allowed_urls: list[str]) -> None:
    """ValueError, saying what to do, for a server the deployment neither configured nor allows."""
    known = ", ".join(configured) or "none"
    for spec in specs:
        if spec.url is None:
            if spec.name not in configured:
                raise ValueError(
                    f"MCP server {spec.name!r} is not configured here (configured: {known}); "
                    "name one of those, or ask the operator to add it to AGENTFLEET_MCP_SERVERS"
                )
        elif spec.name in configured:
            raise ValueError(f"MCP server {spec.name!r} is configured here; give its name alone, without a url")
        elif not url_allowed(spec.url, allowed_urls):
            raise ValueError(
                f"MCP server URL {redact_url(spec.url)} is not allowed here; name a configured server "
                f"(configured: {known}), or ask the operator to add the URL to AGENTFLEET_MCP_ALLOWED_URLS"
            )


def url_allowed(url: str, prefixes: list[str]) -> bool:
    """Whether `url` is one of `prefixes` or lies under one (at a '/' boundary)."""
    return any(url == prefix or url.startswith(prefix.rstrip("/") + "/") for prefix in prefixes)


class TaskOptions(_Strict):
    max_steps: int | None = Field(None, ge=1, le=1000)
    timeout_s: int | None = Field(None, ge=10, le=86_400)
    max_tokens: int | None = Field(None, ge=1000, le=100_000_000)
    model: str | None = Field(None, max_length=200)
    network: bool = False
    push_branch: bool = False
    setup: str | None = Field(
        None, max_length=10_000, description="Setup script run in the sandbox before the agent (with network)"
    )
    check: str | None = Field(
        None,
        max_length=10_000,
        description="Acceptance check: a command run in the sandbox after the agent; the task succeeds only when "
        "it passes (default: each repository's .agentfleet/check)",
    )
    mcp_servers: list[McpServerSpec] = Field(default_factory=list, max_length=20)


class RepoSpec(_Strict):
    url: str
    ref: str | None = None


class _Asked(_Strict):
    """A body holding a query: its text checked (no control or odd Unicode), the query bounded."""

    query: str

    @model_validator(mode="before")
    @classmethod
    def _unicode(cls, data: Any, info: ValidationInfo) -> Any:
        stored = info.context is not None and info.context.get("stored")  # its text was written as UTF-8
        if isinstance(data, dict) and not stored:
            _check_text(data)
        return data

    @field_validator("query")
    @classmethod
    def _query(cls, value: str) -> str:
        return check_query(value)


class TaskRequest(_Asked):
    query: str
    repo_url: str | None = None
    repos: list[RepoSpec | str] = Field(default_factory=list)
    ref: str | None = None
    files: list[str] = Field(default_factory=list)
    options: TaskOptions = Field(default_factory=TaskOptions)
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        if value is not None and (value.startswith("-") or not _REF_OK.match(value)):
            raise ValueError("ref must be a branch, tag or commit name (no spaces, not starting with '-')")
        return value

    @field_validator("files")
    @classmethod
    def _files(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item.strip() or item.startswith("-") or any(ord(ch) < 32 for ch in item):
                raise ValueError(f"input file {item!r} is not a valid artifact key or gs:// URI")
            input_file_key(item)
        return value

    @model_validator(mode="after")
    def _repositories(self, info: ValidationInfo) -> TaskRequest:
        ctx = info.context if info.context is not None else TRUSTED
        allow_local = bool(ctx.get("allow_local_repos", False))
        specs = list(self.repo_specs())
        if not specs and not self.files:
            raise ValueError("give a repository (repo_url or repos), or input files for a task without one")
        if not specs and self.options.push_branch:
            raise ValueError("push_branch needs a repository to push to; a task with only input files has none")
        max_repos = int(ctx.get("max_repos", DEFAULT_MAX_REPOS))
        if len(specs) > max_repos:
            raise ValueError(f"{len(specs)} repositories given; the limit is {max_repos}")
        max_files = int(ctx.get("max_files", DEFAULT_MAX_FILES))
        if len(self.files) > max_files:
            raise ValueError(f"{len(self.files)} input files given; the limit is {max_files}")
        for spec in specs:
            check_repo_url(spec.url, allow_local=allow_local)
            if spec.ref is not None:
                self._ref(spec.ref)
        if not ctx.get("stored"):
            _check_distinct(specs)
        if not ctx.get("trusted"):
            check_mcp_servers(
                self.options.mcp_servers, list(ctx.get("mcp_servers", [])), list(ctx.get("mcp_allowed_urls", []))
            )
        return self

    def repo_specs(self) -> list[RepoSpec]:
        """All repositories, `repo_url` first, each with its effective ref."""
        specs = [RepoSpec(url=self.repo_url, ref=self.ref)] if self.repo_url else []
        for item in self.repos:
            spec = RepoSpec(url=item) if isinstance(item, str) else item
            specs.append(spec if spec.ref else spec.model_copy(update={"ref": self.ref}))
        return specs

    @property
    def primary_repo(self) -> str | None:
        """The first repository; None for a task with input files only (a scratch workspace)."""
        specs = self.repo_specs()
        return specs[0].url if specs else None


def _check_distinct(specs: list[RepoSpec]) -> None:
    """ValueError when two repositories are one (in normal form) or would share a folder."""
    seen: set[str] = set()
    for spec in specs:
        key = normalize_repo_url(spec.url)
        if key in seen:
            raise ValueError(f"repository {redact_url(spec.url)} is listed twice")
        seen.add(key)
    names = [repo_dirname_of(key) for key in seen]
    if len(set(names)) != len(names):
        raise ValueError("two repositories share a folder name; multi-repository tasks need distinct names")


# --- task, events, results ---------------------------------------------------------------------


class TaskStatus(StrEnum):
    QUEUED = "QUEUED"
    DISPATCHED = "DISPATCHED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"

    @property
    def final(self) -> bool:
        return self in (TaskStatus.SUCCEEDED, TaskStatus.FAILED, TaskStatus.CANCELLED)


LIVE = (TaskStatus.DISPATCHED, TaskStatus.RUNNING)
"""An execution is (or is about to be) at work: what counts against a workspace's limit."""
NOT_FINAL = (TaskStatus.QUEUED, *LIVE)


class Usage(_Strict):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_calls: int = 0
    tool_calls: int = 0
    wall_s: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class CheckRun(_Strict):
    """One run of an acceptance check."""

    command: str
    where: str = Field(".", description="The folder it ran in, relative to the workspace")
    exit_code: int | None
    """None: it did not end by itself (timed out or killed)."""
    passed: bool
    output: str = Field("", description="The tail of its output")
    duration_s: float = 0.0


class ToolCallRecord(_Strict):
    """One tool call the agent made, as the result shows it."""

    step: int
    name: str
    arguments: str = Field("", description="Its arguments, clipped")
    is_error: bool = False


class RepoOutcome(_Strict):
    """One repository of a task's result: where the task started there and where its change went."""

    name: str = Field(description="The repository's key in the task: its folder name ('' for a scratch workspace)")
    base_commit: str = Field(description="The commit the task started from (the patch is against it)")
    changed: bool = False
    commit: str | None = Field(None, description="The commit pushed to the task's branch")


class TaskResult(_Strict):
    summary: str
    patch: str | None = None
    diff_stat: str = ""
    changed: list[str] = Field(default_factory=list, description="Files the patch changes")
    change_requested: bool = Field(False, description="The query asks for a change to the files")
    checks: list[CheckRun] = Field(default_factory=list, description="Each run of the acceptance checks, in order")
    tool_calls: list[ToolCallRecord] = Field(default_factory=list, description="The agent's tool calls (the first 200)")
    branch: str | None = None
    artifacts: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="What the patch leaves out, and why")
    usage: Usage = Field(default_factory=Usage)
    repos: list[RepoOutcome] = Field(default_factory=list, description="Each repository: its base, its pushed commit")


class EventKind(StrEnum):
    STATUS = "status"
    WORKSPACE = "workspace"
    LLM = "llm"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    CHECK = "check"
    PROGRESS = "progress"
    """The model is generating: tokens so far, seconds since the request (about once a second)."""
    LOG = "log"
    ERROR = "error"


Emit = Callable[[EventKind, dict[str, Any]], None]
"""Where a step of the work reports an event (the attempt's recorder numbers and stores it)."""


class TaskEvent(_Strict):
    task_id: str
    seq: int
    ts: datetime = Field(default_factory=utcnow)
    kind: EventKind
    data: dict[str, Any] = Field(default_factory=dict)


# --- follow-ups --------------------------------------------------------------------------------


class ChainEntry(_Strict):
    """An earlier task of a follow-up chain, as the follow-up's prompt shows it (clipped)."""

    task_id: str
    status: TaskStatus
    query: str
    summary: str = ""
    diff_stat: str = ""


class PatchStep(_Strict):
    """An earlier task's change that was not pushed: applied as one commit on the way to a follow-up's start."""

    task_id: str
    patch: str = Field(description="The artifact key of that task's patch")
    part: str = Field("", description="The repository's section of a multi-repository patch ('' for the whole)")
    message: str = Field(description="The commit's message")


class RepoStart(_Strict):
    """Where a follow-up starts in one repository: a commit the remote has, then the chain's patches not pushed."""

    commit: str | None = Field(
        None, description="None: where the request's ref points (a scratch workspace: its files)"
    )
    patches: list[PatchStep] = Field(default_factory=list, max_length=1000)


class Followup(_Strict):
    """What a follow-up task carries from its chain, fixed when it is created."""

    chain: list[ChainEntry] = Field(description="The earlier tasks, oldest first (the newest ones, when many)")
    earlier: int = Field(0, description="Older tasks of the chain left out of `chain`")
    repos: dict[str, RepoStart] = Field(
        default_factory=dict, description="Where each repository starts, by its key (RepoOutcome.name)"
    )


class FollowupRequest(_Asked):
    """The body of POST /tasks/{id}/followup: a new query on the parent's result, the parent's options
    except those given here."""

    query: str
    options: TaskOptions | None = Field(None, description="Options to change; the others are the parent's")
    idempotency_key: str | None = Field(None, min_length=1, max_length=200)


def new_task_id() -> str:
    return uuid.uuid4().hex[:16]


class Task(_Strict):
    id: str = Field(default_factory=new_task_id)
    request: TaskRequest
    status: TaskStatus = TaskStatus.QUEUED
    attempt: int = 1
    workspace_id: str = ""
    execution: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    finished_at: datetime | None = None
    heartbeat_at: datetime | None = None
    result: TaskResult | None = None
    error: str | None = None
    usage: Usage = Field(default_factory=Usage)
    parent_id: str | None = Field(None, description="The task this one follows up")
    root_id: str | None = Field(None, description="The first task of its follow-up chain (None: this one is)")
    followup: Followup | None = Field(None, description="What a follow-up carries from its chain")

    @field_validator("request", mode="wrap")
    @classmethod
    def _request(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> TaskRequest:
        """A TaskRequest instance is taken as it is (pydantic's default for a model instance): its
        after-validators would otherwise run again on every Task made from it, without the context
        it was checked with (POST /orchestrate checked each request twice)."""
        if isinstance(value, TaskRequest):
            return value
        validated: TaskRequest = handler(value)
        return validated

    @model_validator(mode="after")
    def _chain(self) -> Task:
        if (self.parent_id is None) != (self.root_id is None) or (self.parent_id is None) != (self.followup is None):
            raise ValueError("a follow-up has parent_id, root_id and followup; a first task has none of them")
        return self

    @property
    def branch(self) -> str:
        """The branch push_branch pushes: the chain's first task's, for all of its tasks."""
        return f"agentfleet/{self.root_id or self.id}"

    @model_validator(mode="after")
    def _workspace(self) -> Task:
        if not self.workspace_id:
            repo = self.request.primary_repo
            self.workspace_id = workspace_id(repo) if repo else f"{SCRATCH_PREFIX}{self.id}"
        return self


TRANSITION_FIXED = frozenset({"id", "status"})
"""Fields a transition's `changes` cannot touch: the id is the key, the status is the new one."""


def apply_transition(task: Task, new: TaskStatus, changes: dict[str, Any]) -> Task:
    """The task moved to `new` with `changes`, `updated_at` (and `finished_at` for a final
    status) set, validated as a whole: what every TaskStore writes. ValueError when invalid."""
    fixed = TRANSITION_FIXED.intersection(changes)
    if fixed:
        raise ValueError(f"a transition cannot change {', '.join(sorted(fixed))}")
    now = utcnow()
    doc = {**task.model_dump(), **changes, "status": new, "updated_at": now}
    if new.final:
        doc["finished_at"] = now
    return Task.model_validate(doc, context=TRUSTED if "request" in changes else STORED)
