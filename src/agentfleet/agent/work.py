"""Working one task end to end: workspace → tools → agent loop → patch, branch, result.

`work_task` is the agent's top-level handler: every failure becomes a FAILED task with a
reason a person can act on; nothing escapes as a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp.server.mcpserver import MCPServer
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from agentfleet.agent.acceptance import Acceptance, CheckSpec, RunCheck, check_specs
from agentfleet.agent.answers import asks_for_change, task_kind
from agentfleet.agent.loop import Agent, Limits, Outcome
from agentfleet.agent.memory import keep, recollect
from agentfleet.agent.models import model_for
from agentfleet.agent.profiles import ModelProfile, profile_for
from agentfleet.agent.prompt import build_prompt, excerpt_for
from agentfleet.agent.result import finish
from agentfleet.agent.snapshot import SnapshotState, restore_snapshot, save_snapshot
from agentfleet.agent.tools import ToolBox, shared_servers
from agentfleet.agent.workspace import PreparedWorkspace, SetupRun, changed_paths, prepare_workspace
from agentfleet.errors import AgentFleetError, ConfigError
from agentfleet.gcp.identity import IdentityToken, audience_of, wants_identity_token
from agentfleet.locks import acquire
from agentfleet.mcp_servers.memory import build_server as memory_server
from agentfleet.mcp_servers.workspace import Workspace
from agentfleet.mcp_servers.workspace import build_server as build_workspace_server
from agentfleet.ports import ArtifactStore, MemoryStore
from agentfleet.runtime.occupancy import Occupancy, occupy
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, grant_workspace
from agentfleet.runtime.workspaces import forget_workspace
from agentfleet.settings import Settings
from agentfleet.tasks import CheckRun, EventKind, Task, TaskEvent, TaskResult, TaskStatus, Usage, utcnow

logger = logging.getLogger(__name__)
Listener = Callable[[TaskEvent], None]


class EventRecorder:
    """Numbers a task's events in order and hands each to the listeners."""

    def __init__(self, task_id: str, listeners: Iterable[Listener] = ()) -> None:
        self.task_id = task_id
        self.listeners = list(listeners)
        self.events: list[TaskEvent] = []

    def __call__(self, kind: EventKind, data: dict[str, Any]) -> None:
        event = TaskEvent(task_id=self.task_id, seq=len(self.events) + 1, kind=EventKind(kind), data=data)
        self.events.append(event)
        for listener in self.listeners:
            listener(event)

    def jsonl(self) -> bytes:
        return "".join(e.model_dump_json() + "\n" for e in self.events).encode()


def work_task(
    task: Task,
    settings: Settings,
    artifacts: ArtifactStore,
    listeners: Iterable[Listener] = (),
    memory: MemoryStore | None = None,
) -> Task:
    """Work `task` to a final state and return it; never raises for a task failure. With `memory`
    (and AGENTFLEET_MEMORY not off), a repository task is shown its workspace's memory and kept in it."""
    record = EventRecorder(task.id, listeners)
    task = task.model_copy(update={"status": TaskStatus.RUNNING, "started_at": utcnow()})
    record(EventKind.STATUS, {"status": TaskStatus.RUNNING.value, "attempt": task.attempt})
    spent, started = Usage(), time.monotonic()  # the agent counts into `spent`: kept when the task fails
    if settings.memory == "off" or not task.request.primary_repo:  # a scratch workspace keeps nothing
        memory = None
    result, error = _attempt(task, settings, artifacts, record, spent, memory)
    if memory is not None and result is not None:
        keep(memory, task, result, error, record.events, record)
    status = TaskStatus.FAILED if error else TaskStatus.SUCCEEDED
    if error:
        record(EventKind.ERROR, {"message": error})
    record(EventKind.STATUS, {"status": status.value, **({"error": error} if error else {})})
    _save_log(artifacts, task.id, record)
    now = utcnow()
    return task.model_copy(
        update={
            "status": status,
            "result": result,
            "error": error,
            "finished_at": now,
            "updated_at": now,
            "usage": result.usage if result else spent.model_copy(update={"wall_s": _since(started)}),
        }
    )


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)


def _attempt(
    task: Task,
    settings: Settings,
    artifacts: ArtifactStore,
    record: EventRecorder,
    spent: Usage,
    memory: MemoryStore | None,
) -> tuple[TaskResult | None, str | None]:
    """The workspace snapshot restored, the work done, the snapshot saved: (result, error)."""
    snapshot: SnapshotState | None = None
    try:
        if settings.snapshots_enabled and task.request.primary_repo:  # a scratch workspace keeps nothing
            snapshot = restore_snapshot(task, settings, artifacts, record)
        result, error = asyncio.run(_work(task, settings, artifacts, record, spent, memory))
    except AgentFleetError as exc:
        result, error = None, str(exc)
    except ExceptionGroup as group:  # raised through the MCP clients' task groups
        result, error = None, _reason(group, task.id)
    except Exception as exc:  # top-level handler: the task fails with a reason, not a traceback
        logger.exception("task failed unexpectedly", extra={"task_id": task.id})
        result, error = None, f"internal error: {exc.__class__.__name__}: {exc}"
    if snapshot is not None:  # failed tasks too: what was fetched and set up is worth keeping
        _save_snapshot(snapshot, task, settings, artifacts, record)
    return result, error


def _reason(group: ExceptionGroup, task_id: str) -> str:
    """The message of the first error of ours in a group; anything else is internal."""
    ours = group.subgroup(lambda exc: isinstance(exc, AgentFleetError))
    while ours is not None and isinstance(ours, ExceptionGroup):
        first = ours.exceptions[0]
        if not isinstance(first, ExceptionGroup):
            return str(first)
        ours = first
    logger.error("task failed unexpectedly: %r", group, extra={"task_id": task_id}, exc_info=group)
    return f"internal error: {group.exceptions[0]!r}"


def _save_snapshot(
    snapshot: SnapshotState, task: Task, settings: Settings, artifacts: ArtifactStore, record: EventRecorder
) -> None:
    try:
        save_snapshot(snapshot, task, settings, artifacts, record)
    except Exception:  # top-level handler: a snapshot is an optimisation, never the task's outcome
        logger.exception("could not save the workspace snapshot", extra={"task_id": task.id})


def _save_log(artifacts: ArtifactStore, task_id: str, record: EventRecorder) -> None:
    try:
        artifacts.put_bytes(f"tasks/{task_id}/events.jsonl", record.jsonl())
    except OSError:
        logger.warning("could not save the event log", extra={"task_id": task_id})


async def _work(
    task: Task,
    settings: Settings,
    artifacts: ArtifactStore,
    record: EventRecorder,
    spent: Usage,
    memory: MemoryStore | None,
) -> tuple[TaskResult, str | None]:
    options = task.request.options
    config = SandboxConfig.from_settings(settings, network=options.network)
    Sandbox(settings.home, config).check()
    if not settings.gpt_oss_url:
        raise ConfigError(
            "no model endpoint: set GPT_OSS_URL to an OpenAI-compatible endpoint, or use `agentfleet run`/"
            "`agentfleet serve`, which start the embedded model when it is unset (see README)"
        )
    with occupy(settings, task.workspace_id, record) as occupancy:
        workspace = prepare_workspace(
            task, settings, artifacts, emit=record, run_setup=_setup_runner(settings, config, task)
        )
        grant_workspace(workspace.root, config.uid, config.gid)
        config = config.model_copy(update={"path_prepend": tool_paths(workspace)})
        outcome = await _loop(task, settings, workspace, config, occupancy, record, spent, memory)
        occupancy.wait_processes_gone()  # the server and its commands are gone before git reads the checkout
        try:
            return finish(task, workspace, artifacts, outcome, record, settings.max_patch_bytes)
        finally:
            if workspace.scratch:
                forget_workspace(settings, task.workspace_id)


async def _loop(
    task: Task,
    settings: Settings,
    workspace: PreparedWorkspace,
    sandbox: SandboxConfig,
    occupancy: Occupancy,
    record: EventRecorder,
    spent: Usage,
    memory: MemoryStore | None,
) -> Outcome:
    """The agent loop with its tools (the workspace server, the memory server, then the shared
    servers) and its acceptance checks, all under the agent's own sandbox configuration."""
    options = task.request.options
    model = options.model or settings.model
    profile = profile_for(model, settings.model_profile)
    checks = check_specs(options.check, workspace.root, [repo.path for repo in workspace.repos])
    shown = excerpt_for(task, workspace, profile)
    checkouts = [repo.path for repo in workspace.repos]
    remembered = recollect(task, workspace.root, checkouts, memory, profile.protocol == "text", record)
    acceptance = Acceptance(
        checks,
        _check_runner(sandbox, settings),
        settings.check_retries,
        emit=record,
        nudge_suffix=profile.nudge_suffix,
        changed=_change_probe(task, workspace, profile),
        shown=shown,
        shown_is_look=task_kind(task.request.query) in profile.excerpt_is_look,
    )
    with _workspace_server(workspace.root, sandbox, occupancy.procs) as server:
        async with ToolBox(profile, call_timeout_s=settings.exec_max_timeout_s + 60) as tools:
            await tools.connect("workspace", server)
            if memory is not None:
                await tools.connect("memory", memory_server(memory, task.workspace_id, task.id))
            for plan in shared_servers(
                options.mcp_servers, settings, workspace.root, task.id, network=bool(options.network)
            ):
                await tools.connect(plan.name, plan.server, plan.tools)
                record(EventKind.LOG, {"message": f"MCP server {plan.name} connected ({plan.transport})"})
            async with _llm_client(settings) as llm:
                talker = model_for(
                    llm,
                    model,
                    profile,
                    tools,
                    spent,
                    record,
                    max_reply_tokens=settings.llm_max_reply_tokens,
                    wait_s=settings.llm_wait_s,
                    stream=settings.llm_stream,
                    progress_s=settings.progress_interval_s,
                    embedded=settings.llm_embedded,
                    reasoning_effort=settings.reasoning_effort,
                    headers=_llm_headers(settings),
                )
                agent = Agent(talker, tools, _limits(task, settings), record, spent, acceptance)
                return await agent.run(build_prompt(task, workspace, checks, profile, shown, remembered))


def _change_probe(task: Task, workspace: PreparedWorkspace, profile: ModelProfile) -> Callable[[], bool] | None:
    """Whether any checkout has changed: for a task that asks for a change, where the profile wants
    it checked before an answer is taken (small models that describe a fix instead of making it)."""
    if not profile.nudge_unchanged or not workspace.repos or not asks_for_change(task.request.query):
        return None
    return lambda: any(changed_paths(repo) for repo in workspace.repos)


def _llm_client(settings: Settings) -> AsyncOpenAI:
    return AsyncOpenAI(
        base_url=settings.gpt_oss_url,
        api_key=settings.llm_api_key.get_secret_value(),
        timeout=settings.llm_timeout_s,
        max_retries=0,  # waiting for a model that is away is the Model's, with backoff and events
        http_client=DefaultAsyncHttpxClient(verify=tls_context()),
    )


def warm_up(settings: Settings) -> None:
    """Make once what every task's start would make again: the TLS context of the model client, the
    sandbox's probe (a bubblewrap run, cached per process), and one workspace server built and
    connected over an empty folder (a process's first build and connect cost ~30 ms of schemas and
    caches more than the next). The warm launcher calls it before it forks the agents; a failure is
    left for the task to report."""
    tls_context()
    config = SandboxConfig.from_settings(settings, network=False)
    with contextlib.suppress(AgentFleetError):
        Sandbox(settings.home, config).check()
    with tempfile.TemporaryDirectory(prefix="agentfleet-warm-") as empty:
        asyncio.run(_connect_once(Path(empty), config))


async def _connect_once(root: Path, config: SandboxConfig) -> None:
    """Build the workspace server over `root` and connect a tool box to it; no tool is called."""
    workspace = Workspace(root, Sandbox(root, config))
    try:
        async with ToolBox(profile_for("", "native")) as tools:
            await tools.connect("workspace", build_workspace_server(workspace))
    finally:
        workspace.close()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The HTTP library's own default TLS context, made once per process: loading the CA bundle
    takes ~30 ms, which a client made per task would pay before its first request (the warm
    launcher makes it before it forks the agents)."""
    return httpx2.create_ssl_context()


def _llm_headers(settings: Settings) -> Callable[[], dict[str, str]] | None:
    """Headers each model request carries: a Google identity token when the endpoint is a private
    Cloud Run service (AGENTFLEET_LLM_IDENTITY_TOKEN, default: for *.run.app)."""
    if not settings.gpt_oss_url or not wants_identity_token(settings.gpt_oss_url, settings.llm_identity_token):
        return None
    return IdentityToken(audience_of(settings.gpt_oss_url)).headers


def _limits(task: Task, settings: Settings) -> Limits:
    options = task.request.options
    return Limits(
        max_steps=options.max_steps or settings.default_max_steps,
        max_tokens=options.max_tokens or settings.default_max_tokens,
        timeout_s=float(options.timeout_s or settings.default_timeout_s),
    )


def tool_paths(workspace: PreparedWorkspace) -> tuple[str, ...]:
    """What setup installed for the agent's commands to find first: each checkout's `.venv/bin` and
    `node_modules/.bin` (real folders, not links)."""
    found = []
    for repo in workspace.repos:
        for sub in (".venv/bin", "node_modules/.bin"):
            folder = repo.path / sub
            if folder.is_dir() and not any(p.is_symlink() for p in (folder, folder.parent)) and ":" not in str(folder):
                found.append(str(folder))
    return tuple(found)


def _check_runner(config: SandboxConfig, settings: Settings) -> RunCheck:
    def run_check(spec: CheckSpec) -> CheckRun:
        result = Sandbox(spec.cwd, config).run(spec.command, timeout_s=settings.check_timeout_s)
        code = None if result.timed_out else result.exit_code
        output = result.output + (f"\n[timed out after {settings.check_timeout_s}s]" if result.timed_out else "")
        return CheckRun(
            command=spec.command,
            where=spec.where,
            exit_code=code,
            passed=code == 0,
            output=output[-4000:],
            duration_s=round(result.duration_s, 3),
        )

    return run_check


def _setup_runner(settings: Settings, config: SandboxConfig, task: Task) -> Callable[[Path, str], SetupRun]:
    """Setup runs in the sandbox like the agent's commands, but with network (AGENTFLEET_SETUP_NETWORK,
    on by default) and the setup-only environment (AGENTFLEET_SETUP_ENV): the agent's own commands
    get neither unless the task allows network."""
    workspace_root = settings.workspaces_dir / task.workspace_id
    setup_config = config.model_copy(update={"network": config.network or settings.setup_network})

    def run_setup(cwd: Path, script: str) -> SetupRun:
        grant_workspace(workspace_root, config.uid, config.gid)
        sandbox = Sandbox(cwd, setup_config, env=settings.setup_env)
        result = sandbox.run(script, timeout_s=settings.setup_timeout_s)
        code = result.exit_code if result.exit_code is not None else 124
        return SetupRun(exit_code=code, output=result.output)

    return run_setup


@contextmanager
def _workspace_server(root: Path, sandbox: SandboxConfig, procs_lock: Path) -> Iterator[MCPServer]:
    """The workspace server, in this process: its tools act on the checkout as host code does (paths
    resolved inside the workspace, files opened without following links) and run every command in
    the sandbox, which stays the isolation boundary. While it lives this process holds the
    workspace's process lock shared (a later attempt waits for it, and it goes with this process
    however it ends); the commands die with this process (bwrap --die-with-parent). In-process it
    costs no second interpreter: no ~0.9 s start, no ~70 MiB (the stdio server stays for other
    clients: `python -m agentfleet.mcp_servers.workspace`)."""
    fd = acquire(procs_lock, shared=True, timeout_s=30)
    owner = (sandbox.uid, sandbox.gid) if sandbox.mode == "bwrap" else None
    workspace = Workspace(root, Sandbox(root, sandbox), owner)
    try:
        yield build_workspace_server(workspace)
    finally:
        workspace.close()  # its sandbox session, and whatever still runs in it
        os.close(fd)
