"""Working one task end to end: workspace → tools → agent loop → patch, branch, result.

`work_task` is the agent's top-level handler: every failure becomes a FAILED task with a
reason a person can act on; nothing escapes as a traceback.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from mcp import StdioServerParameters
from openai import AsyncOpenAI

from agentfleet.agent.loop import Agent, Limits, Outcome
from agentfleet.agent.models import model_for
from agentfleet.agent.profiles import profile_for
from agentfleet.agent.result import finish
from agentfleet.agent.snapshot import SnapshotState, restore_snapshot, save_snapshot
from agentfleet.agent.tools import ToolBox, shared_server_url
from agentfleet.agent.workspace import PreparedWorkspace, SetupRun, prepare_workspace
from agentfleet.errors import AgentFleetError, ConfigError
from agentfleet.ports import ArtifactStore
from agentfleet.runtime.filewalk import entry, iter_files
from agentfleet.runtime.occupancy import Occupancy, occupy
from agentfleet.runtime.sandbox import Sandbox, SandboxConfig, grant_workspace
from agentfleet.settings import Settings
from agentfleet.tasks import EventKind, Task, TaskEvent, TaskResult, TaskStatus, Usage, utcnow

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


def work_task(task: Task, settings: Settings, artifacts: ArtifactStore, listeners: Iterable[Listener] = ()) -> Task:
    """Work `task` to a final state and return it; never raises for a task failure."""
    record = EventRecorder(task.id, listeners)
    task = task.model_copy(update={"status": TaskStatus.RUNNING, "started_at": utcnow()})
    record(EventKind.STATUS, {"status": TaskStatus.RUNNING.value, "attempt": task.attempt})
    spent, started = Usage(), time.monotonic()  # the agent counts into `spent`: kept when the task fails
    result, error = _attempt(task, settings, artifacts, record, spent)
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
    task: Task, settings: Settings, artifacts: ArtifactStore, record: EventRecorder, spent: Usage
) -> tuple[TaskResult | None, str | None]:
    """The workspace snapshot restored, the work done, the snapshot saved: (result, error)."""
    snapshot: SnapshotState | None = None
    try:
        if settings.snapshots_enabled:
            snapshot = restore_snapshot(task, settings, artifacts, record)
        result, error = asyncio.run(_work(task, settings, artifacts, record, spent))
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
    task: Task, settings: Settings, artifacts: ArtifactStore, record: EventRecorder, spent: Usage
) -> tuple[TaskResult, str | None]:
    options = task.request.options
    config = SandboxConfig.from_settings(settings, network=options.network)
    Sandbox(settings.home, config).check()
    if not settings.gpt_oss_url:
        raise ConfigError("GPT_OSS_URL is not set; point it at an OpenAI-compatible endpoint (see README)")
    with occupy(settings, task.workspace_id, record) as occupancy:
        workspace = prepare_workspace(
            task, settings, artifacts, emit=record, run_setup=_setup_runner(settings, config, task)
        )
        grant_workspace(workspace.root, config.uid, config.gid)
        outcome = await _loop(task, settings, workspace, occupancy, record, spent)
        occupancy.wait_processes_gone()  # the server and its commands are gone before git reads the checkout
        return finish(task, workspace, artifacts, outcome, record, settings.max_patch_bytes)


async def _loop(
    task: Task,
    settings: Settings,
    workspace: PreparedWorkspace,
    occupancy: Occupancy,
    record: EventRecorder,
    spent: Usage,
) -> Outcome:
    """The agent loop with its tools: the workspace server, then the shared servers."""
    options = task.request.options
    model = options.model or settings.model
    profile = profile_for(model, settings.model_profile)
    sandbox = SandboxConfig.from_settings(settings, network=options.network)
    server = _workspace_server(workspace.root, settings, sandbox, occupancy.procs)
    async with ToolBox(profile, call_timeout_s=settings.exec_max_timeout_s + 60) as tools:
        await tools.connect("workspace", server)
        for spec in options.mcp_servers:
            await tools.connect(spec.name, shared_server_url(spec, settings))
        async with AsyncOpenAI(
            base_url=settings.gpt_oss_url,
            api_key=settings.llm_api_key.get_secret_value(),
            timeout=settings.llm_timeout_s,
            max_retries=settings.llm_retries,
        ) as llm:
            wait_s, reply_cap = settings.llm_wait_s, settings.llm_max_reply_tokens
            talker = model_for(llm, model, profile, tools, spent, record, max_reply_tokens=reply_cap, wait_s=wait_s)
            return await Agent(talker, tools, _limits(task, settings), record, spent).run(_prompt(task, workspace))


def _limits(task: Task, settings: Settings) -> Limits:
    options = task.request.options
    return Limits(
        max_steps=options.max_steps or settings.default_max_steps,
        max_tokens=options.max_tokens or settings.default_max_tokens,
        timeout_s=float(options.timeout_s or settings.default_timeout_s),
    )


def _setup_runner(settings: Settings, config: SandboxConfig, task: Task) -> Callable[[Path, str], SetupRun]:
    workspace_root = settings.workspaces_dir / task.workspace_id

    def run_setup(cwd: Path, script: str) -> SetupRun:
        grant_workspace(workspace_root, config.uid, config.gid)
        result = Sandbox(cwd, config).run(script, timeout_s=settings.setup_timeout_s)
        code = result.exit_code if result.exit_code is not None else 124
        return SetupRun(exit_code=code, output=result.output)

    return run_setup


def _workspace_server(
    root: Path, settings: Settings, sandbox: SandboxConfig, procs_lock: Path
) -> StdioServerParameters:
    """The workspace server as a child process: its sandbox given as a typed model on its command
    line; it ends with this process (and its commands with it), holds the workspace's process lock
    while alive, and its environment carries no secrets."""
    env = {"PYTHONUNBUFFERED": "1"}
    if "PYTHONPATH" in os.environ:  # how this process found agentfleet, when not installed
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    args = ["-m", "agentfleet.mcp_servers.workspace", "--root", str(root), "--sandbox", sandbox.model_dump_json()]
    args += ["--owner-pid", str(os.getpid()), "--hold-lock", str(procs_lock)]
    settings.home.mkdir(parents=True, exist_ok=True)
    return StdioServerParameters(command=sys.executable, args=args, env=env, cwd=str(settings.home))


def _prompt(task: Task, workspace: PreparedWorkspace) -> str:
    lines = [task.request.query.strip(), "", "Workspace:"]
    for repo in workspace.repos:
        where = repo.path.relative_to(workspace.root).as_posix() or "."
        lines.append(f"- {where}: {repo.url} at {repo.base_commit[:12]}")
    inputs = workspace.root / ".agentfleet" / "inputs"
    if inputs.is_dir():
        lines.append("Input files: " + ", ".join(f".agentfleet/inputs/{p.name}" for p in sorted(inputs.iterdir())))
    files = [entry(workspace.root, f) for f in itertools.islice(iter_files(workspace.root, workspace.root), 101)]
    if files:
        more = "\n- … (more files: use list_files)" if len(files) > 100 else ""
        lines += ["", "Files:", *(f"- {f}" for f in files[:100])]
        lines[-1] += more
    return "\n".join(lines)
