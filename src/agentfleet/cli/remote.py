"""CLI commands that talk to an AgentFleet server: submit, followup, chain, status, watch, logs, cancel,
containers, tasks, memory; workspace reset."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.markup import escape
from rich.table import Table

from agentfleet.cli.console import CHECK_HELP, MCP_HELP, SETUP_HELP, err, mcp_specs, out, repo_arg, task_options
from agentfleet.cli.render import EventPrinter, report
from agentfleet.client import ApiError, Client
from agentfleet.local.token import read_token
from agentfleet.memory import MemoryEntry
from agentfleet.names import WORKSPACE_ID, workspace_id
from agentfleet.net import is_loopback
from agentfleet.settings import load_settings

Server = Annotated[str, typer.Option("--server", envvar="AGENTFLEET_SERVER", help="AgentFleet server URL")]
Token = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar="AGENTFLEET_API_TOKEN",
        help="Bearer token (default: a local server's own, from $AGENTFLEET_HOME/api-token; "
        "a Google identity token for https URLs)",
    ),
]
DEFAULT_SERVER = "http://127.0.0.1:8080"


def _client(server: str, token: str | None) -> Client:
    if token is None and is_loopback(urlsplit(server).hostname or ""):
        token = read_token(load_settings().home)  # the token `agentfleet serve` keeps for this machine
    return Client(server, token)


def _fail(exc: ApiError) -> typer.Exit:
    err.print(f"[red]{escape(str(exc))}[/red]")
    return typer.Exit(1)


def submit(
    query: Annotated[str, typer.Argument(help="What the agent should do")],
    repo: Annotated[list[str] | None, typer.Option("--repo", help="Repository URL (repeatable)")] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option("--file", help="Input file to upload (repeatable); without --repo, the workspace"),
    ] = None,
    ref: Annotated[str | None, typer.Option(help="Branch, tag or commit")] = None,
    check: Annotated[str | None, typer.Option("--check", help=CHECK_HELP)] = None,
    setup: Annotated[str | None, typer.Option("--setup", help=SETUP_HELP)] = None,
    mcp: Annotated[list[str] | None, typer.Option("--mcp", help=MCP_HELP)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many model turns")] = None,
    network: Annotated[bool, typer.Option("--network", help="Let commands reach the network")] = False,
    push_branch: Annotated[bool, typer.Option("--push-branch", help="Push agentfleet/<task-id>")] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the task until it ends")] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Submit a task to a server; print its id (and follow it with --wait)."""
    repos = [repo_arg(r) for r in repo or []]
    client = _client(server, token)
    options = task_options(check=check, setup=setup, max_steps=max_steps, network=network, push_branch=push_branch)
    options |= task_options(mcp_servers=mcp_specs(mcp))
    try:
        keys = _upload(client, file or [])
        body = {"query": query, "repo_url": repos[0] if repos else None, "repos": repos[1:], "ref": ref}
        created = client.submit({**body, "files": keys, "options": options})
    except ApiError as exc:
        raise _fail(exc) from None
    out.print(created["task_id"])
    if wait:
        watch(created["task_id"], server=server, token=token)


def followup(
    task_id: Annotated[str, typer.Argument(help="The ended task to follow up")],
    query: Annotated[str, typer.Argument(help="What the agent should do next, on that task's result")],
    check: Annotated[str | None, typer.Option("--check", help=CHECK_HELP)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many model turns")] = None,
    network: Annotated[
        bool | None, typer.Option("--network/--no-network", help="Let commands reach the network")
    ] = None,
    push_branch: Annotated[
        bool | None,
        typer.Option("--push-branch/--no-push-branch", help="Add the change to the chain's branch agentfleet/<first>"),
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Follow the task until it ends")] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Follow up an ended task: a new task on its result (same repositories, same branch); print its id.
    Options not given are the parent's."""
    given = {"check": check, "max_steps": max_steps, "network": network, "push_branch": push_branch}
    options = {key: value for key, value in given.items() if value is not None}
    try:
        created = _client(server, token).followup(task_id, {"query": query, "options": options})
    except ApiError as exc:
        raise _fail(exc) from None
    out.print(created["task_id"])
    if wait:
        watch(created["task_id"], server=server, token=token)


def chain(
    task_id: Annotated[str, typer.Argument(help="Any task of the chain")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """The follow-up chain a task belongs to: its first task, then each follow-up, in order."""
    try:
        found = _client(server, token).chain(task_id)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps([json.loads(t.model_dump_json()) for t in found]))
        return
    table = Table("task", "parent", "status", "branch", "query")
    for t in found:
        branch = t.result.branch if t.result and t.result.branch else ""
        table.add_row(t.id, t.parent_id or "", t.status.value, branch, escape(t.request.query.splitlines()[0][:60]))
    out.print(table)


def _upload(client: Client, files: list[Path]) -> list[str]:
    """Upload each file under one new batch folder (so two submits never share a name): their keys."""
    batch = uuid.uuid4().hex[:12]
    keys = []
    for path in files:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a readable file", param_hint="--file")
        keys.append(client.upload(path, f"{batch}/{path.name}"))
        err.print(f"uploaded {path} as {keys[-1]}")
    return keys


def status(task_id: str, server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """Show a task as JSON."""
    try:
        out.print_json(_client(server, token).task(task_id).model_dump_json())
    except ApiError as exc:
        raise _fail(exc) from None


def watch(task_id: str, server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """Follow a task's events live until it ends; exit 0 when it succeeded."""
    client = _client(server, token)
    printer = EventPrinter(err)
    try:
        for event in client.stream(task_id):
            printer(event)
        task = client.task(task_id)
    except ApiError as exc:
        raise _fail(exc) from None
    finally:
        printer.close()
    report(task, out, err, task.result.patch if task.result else None)
    raise typer.Exit(0 if task.status.value == "SUCCEEDED" else 1)


def logs(task_id: str, server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """Print every event of a task so far, one JSON line each."""
    try:
        for event in _client(server, token).events(task_id):
            out.print(event.model_dump_json(), highlight=False)
    except ApiError as exc:
        raise _fail(exc) from None


def cancel(task_id: str, server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """Cancel a task that has not finished."""
    try:
        task = _client(server, token).cancel(task_id)
    except ApiError as exc:
        raise _fail(exc) from None
    out.print(f"{task.id} {task.status.value}")


def containers(server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """Active executions per workspace."""
    try:
        data = _client(server, token).containers()
    except ApiError as exc:
        raise _fail(exc) from None
    table = Table("workspace", "execution", "task", "attempt", "state")
    for workspace, executions in data.get("workspaces", {}).items():
        for ex in executions:
            table.add_row(workspace, ex["name"], ex["task_id"], str(ex["attempt"]), ex["state"])
    out.print(table)


def tasks(
    status_filter: Annotated[str | None, typer.Option("--status", help="Only tasks in this status")] = None,
    workspace: Annotated[str | None, typer.Option(help="Only tasks of this workspace")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """List tasks, newest first."""
    try:
        found = _client(server, token).tasks(status_filter, workspace)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        out.print_json(json.dumps([json.loads(t.model_dump_json()) for t in found]))
        return
    table = Table("task", "status", "attempt", "workspace", "created", "query")
    for t in found:
        table.add_row(
            t.id,
            t.status.value,
            str(t.attempt),
            t.workspace_id,
            t.created_at.strftime("%Y-%m-%d %H:%M"),
            escape(t.request.query.splitlines()[0][:60]),
        )
    out.print(table)


def memory(
    workspace: Annotated[str, typer.Argument(help="A task's workspace_id, or the repository (URL or local path)")],
    clear: Annotated[bool, typer.Option("--clear", help="Forget it: later tasks see none of it")] = False,
    query: Annotated[str | None, typer.Option("--query", "-q", help="Only the entries matching these words")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    local: Annotated[
        bool, typer.Option("--local", help="Act on $AGENTFLEET_HOME here, without a server (after `agentfleet run`)")
    ] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Show (or with --clear forget) what a workspace keeps of its tasks and its agents' notes."""
    workspace_id = _workspace_of(workspace)
    if local:
        from agentfleet.backends import build_memory

        store = build_memory(load_settings())
        if clear:
            out.print(f"{workspace_id}: {store.clear(workspace_id)} memory entries forgotten")
            return
        entries = store.search(workspace_id, query, limit=50) if query else store.recent(workspace_id, limit=50)
    else:
        try:
            found = _remote_memory(_client(server, token), workspace_id, clear, query)
        except ApiError as exc:
            raise _fail(exc) from None
        if found is None:
            return
        entries = found
    if as_json:
        out.print_json(json.dumps([json.loads(e.model_dump_json()) for e in entries]))
    elif not entries:
        err.print(f"{workspace_id}: nothing in memory" + (f" matches {query!r}" if query else ""))
    else:
        out.print(escape("\n".join(entry.render() for entry in entries)), highlight=False)


def _remote_memory(client: Client, workspace_id: str, clear: bool, query: str | None) -> list[MemoryEntry] | None:
    if clear:
        out.print(f"{workspace_id}: {client.clear_memory(workspace_id)} memory entries forgotten")
        return None
    return client.memory(workspace_id, query)


def _workspace_of(value: str) -> str:
    """A workspace id as given, or the workspace of a repository URL or local path."""
    if WORKSPACE_ID.match(value) and not Path(value).expanduser().exists():
        return value
    return workspace_id(repo_arg(value))


workspace_app = typer.Typer(help="Workspaces: what persists of a repository between its tasks", no_args_is_help=True)


@workspace_app.command("reset")
def reset_workspace(
    workspace_id: Annotated[str, typer.Argument(help="The workspace (a task's workspace_id)")],
    local: Annotated[
        bool, typer.Option("--local", help="Act on $AGENTFLEET_HOME here, without a server (after `agentfleet run`)")
    ] = False,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Forget a workspace's checkout (ignored files too), setup markers and snapshot: its next task starts afresh."""
    try:
        if local:
            from agentfleet.backends import build_backends
            from agentfleet.errors import AgentFleetError
            from agentfleet.service import Service

            settings = load_settings()
            try:
                removed = Service(build_backends(settings), settings).reset_workspace(workspace_id).removed
            except AgentFleetError as exc:
                err.print(f"[red]{escape(str(exc))}[/red]")
                raise typer.Exit(1) from None
        else:
            removed = _client(server, token).reset_workspace(workspace_id)["removed"]
    except ApiError as exc:
        raise _fail(exc) from None
    out.print(f"{workspace_id} reset: {', '.join(removed) or 'nothing was kept'}")


COMMANDS: list[Callable[..., None]] = [submit, followup, chain, status, watch, logs, cancel, containers, tasks, memory]
