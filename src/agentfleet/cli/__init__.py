"""The `agentfleet` command line: `run` and `serve` here; the remote client commands (remote.py),
`llm` (llm.py) and `eval` (evals.py) beside."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.markup import escape

from agentfleet.cli.console import CHECK_HELP, MCP_HELP, SETUP_HELP, err, mcp_specs, out, repo_arg, task_options
from agentfleet.cli.evals import eval_command
from agentfleet.cli.llm import llm_app
from agentfleet.cli.remote import COMMANDS, workspace_app
from agentfleet.cli.render import EventPrinter, report
from agentfleet.errors import describe_validation_error
from agentfleet.llm.endpoint import model_endpoint
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.settings import Settings, load_settings
from agentfleet.tasks import Task, TaskRequest, TaskStatus

app = typer.Typer(help="AgentFleet: run AI coding agents on git repositories.", no_args_is_help=True)


@app.callback()
def _root() -> None:
    """AgentFleet: run AI coding agents on git repositories."""


def _upload_inputs(files: list[Path], artifacts: LocalArtifactStore) -> list[str]:
    keys = []
    batch = uuid.uuid4().hex[:12]
    for path in files:
        if not path.is_file():
            raise typer.BadParameter(f"{path} is not a readable file", param_hint="--file")
        keys.append(artifacts.put_file(f"inputs/{batch}/{path.name}", path))
    return keys


@app.command()
def run(
    query: Annotated[str, typer.Argument(help="What the agent should do")],
    repo: Annotated[list[str] | None, typer.Option("--repo", help="Repository URL or local path (repeatable)")] = None,
    file: Annotated[
        list[Path] | None, typer.Option("--file", help="Input file (repeatable); without --repo, the whole workspace")
    ] = None,
    ref: Annotated[str | None, typer.Option(help="Branch, tag or commit to check out")] = None,
    check: Annotated[str | None, typer.Option("--check", help=CHECK_HELP)] = None,
    setup: Annotated[str | None, typer.Option("--setup", help=SETUP_HELP)] = None,
    mcp: Annotated[list[str] | None, typer.Option("--mcp", help=MCP_HELP)] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many model turns")] = None,
    network: Annotated[bool, typer.Option("--network", help="Let commands reach the network")] = False,
    push_branch: Annotated[bool, typer.Option("--push-branch", help="Push agentfleet/<task-id>")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final task as JSON on stdout")] = False,
) -> None:
    """Run one task in this process with the local defaults and show its steps live."""
    from agentfleet.agent.work import work_task
    from agentfleet.backends import build_memory

    settings = load_settings()
    artifacts = LocalArtifactStore(settings.artifacts_dir)
    repos = [repo_arg(r) for r in repo or []]
    options = task_options(check=check, setup=setup, max_steps=max_steps, network=network, push_branch=push_branch)
    options |= task_options(mcp_servers=mcp_specs(mcp))
    body = {
        "query": query,
        "repo_url": repos[0] if repos else None,
        "repos": repos[1:],
        "ref": ref,
        "files": _upload_inputs(file or [], artifacts),
        "options": options,
    }
    try:
        request = TaskRequest.model_validate(body, context=settings.validation_context())
    except ValidationError as exc:
        err.print(f"[red]invalid task:[/red] {describe_validation_error(exc)}")
        raise typer.Exit(2) from None
    task = Task(request=request)
    with _endpoint(settings) as configured:
        err.print(f"[bold]task {task.id}[/bold] on workspace {task.workspace_id}")
        printer = EventPrinter(err)
        try:
            final = work_task(task, configured, artifacts, listeners=[printer], memory=build_memory(configured))
        finally:
            printer.close()
    if as_json:
        out.print_json(final.model_dump_json())
        if final.status != TaskStatus.SUCCEEDED:
            err.print(f"[red]task {final.status.value}:[/red] {escape(final.error or '')}")
    else:
        patch = final.result.patch if final.result else None
        report(final, out, err, artifacts.uri(patch) if patch else None)
    raise typer.Exit(0 if final.status == TaskStatus.SUCCEEDED else 1)


@contextmanager
def _endpoint(settings: Settings, model: str | None = None) -> Iterator[Settings]:
    """The model endpoint, or a clear exit when the embedded model cannot start."""
    from agentfleet.errors import AgentFleetError

    try:
        with model_endpoint(settings, lambda line: err.print(f"[dim]{escape(line)}[/dim]"), model) as configured:
            yield configured
    except AgentFleetError as exc:
        err.print(f"[red]model unavailable:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs AGENTFLEET_API_TOKEN")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on")] = 8080,
) -> None:
    """Serve the HTTP API with a local queue, dispatcher, job runner and reaper (Ctrl-C stops)."""
    import signal

    from agentfleet.backends import build_backends
    from agentfleet.errors import AgentFleetError
    from agentfleet.local.server import LocalServer
    from agentfleet.logs import configure_logging
    from agentfleet.service import Service

    configure_logging()
    settings = load_settings()
    with _endpoint(settings) as configured:  # the agents get these settings, the embedded model's URL too
        try:
            server = LocalServer(Service(build_backends(configured), configured), host, port)
        except (AgentFleetError, OSError) as exc:
            err.print(f"[red]cannot serve:[/red] {escape(str(exc))}")
            raise typer.Exit(2) from None
        signal.signal(signal.SIGTERM, _interrupt)
        err.print(f"AgentFleet serving on {server.url} (Ctrl-C stops; running agents keep going)")
        where = f"the token in {server.token_file}" if server.token_file else "AGENTFLEET_API_TOKEN"
        err.print(f"web console: {server.url}/ (sign in with {where})")
        with suppress(KeyboardInterrupt):
            server.serve_forever()
    err.print("stopped")


app.add_typer(llm_app, name="llm")
app.add_typer(workspace_app, name="workspace")
app.command("eval")(eval_command)
for _command in COMMANDS:
    app.command()(_command)


def main() -> None:
    """The `agentfleet` command: a wrong setting is a message and exit status 2, not a traceback."""
    from agentfleet.errors import ConfigError

    try:
        app()
    except ConfigError as exc:
        err.print(f"[red]{escape(str(exc))}[/red]")
        raise SystemExit(2) from None
