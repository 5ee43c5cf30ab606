"""`agentfleet llm …` (the embedded model) and `agentfleet eval` (the evaluation harness)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentfleet.errors import AgentFleetError
from agentfleet.llm.endpoint import model_endpoint
from agentfleet.settings import load_settings

err = Console(stderr=True, soft_wrap=True)
out = Console(soft_wrap=True)
llm_app = typer.Typer(help="The embedded CPU model used when GPT_OSS_URL is not set.", no_args_is_help=True)


def _say(line: str) -> None:
    err.print(f"[dim]{escape(line)}[/dim]")


@llm_app.command("serve")
def llm_serve(
    model: Annotated[str | None, typer.Option(help="qwen2.5-coder-1.5b or qwen2.5-coder-0.5b")] = None,
    port: Annotated[int | None, typer.Option(help="Port on 127.0.0.1 (default: a free one)")] = None,
) -> None:
    """Serve the embedded model on 127.0.0.1 with an OpenAI-compatible API until Ctrl-C."""
    from agentfleet.llm.embedded import serve_embedded

    settings = load_settings()
    name = model or settings.embedded_model
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        with serve_embedded(settings, name, progress=_say, port=port) as server:
            out.print(server.url)
            err.print(f"serving {name} at {server.url} — Ctrl-C to stop")
            try:
                while not stop.wait(0.5):
                    if not server.alive():
                        err.print("[red]the model server stopped unexpectedly[/red]")
                        raise typer.Exit(1)
            except KeyboardInterrupt:
                pass
    except AgentFleetError as exc:
        err.print(f"[red]cannot serve {name}:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    err.print("stopped")


@llm_app.command("status")
def llm_status() -> None:
    """Which embedded models are installed, assembled and verified."""
    from agentfleet.llm.embedded import MODELS, model_status

    settings = load_settings()
    table = Table("model", "packages", "assembled", "verified", "notes")
    for row in model_status(settings.models_dir):
        spec = MODELS[row["name"]]
        mark = {True: "[green]yes[/green]", False: "[red]no[/red]"}
        note = "default" if row["name"] == settings.embedded_model else ""
        if not row["installed"]:
            note = f"pip install 'agentfleet[embedded,{spec.pip_extra}]'"
        table.add_row(row["name"], mark[row["installed"]], mark[row["assembled"]], mark[row["verified"]], note)
    out.print(table)
    endpoint = settings.gpt_oss_url or "(not set: `agentfleet run` starts the embedded model)"
    out.print(f"GPT_OSS_URL: {endpoint}\nmodel cache: {settings.models_dir}")


def eval_command(
    suite_dir: Annotated[Path, typer.Argument(help="A suite folder such as evals/", exists=True, file_okay=False)],
    model_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL (default: embedded)")] = None,
    model: Annotated[str | None, typer.Option(help="Model name to send (or embedded model to start)")] = None,
    profile: Annotated[str | None, typer.Option(help="Model profile: auto, gpt-oss, native, text")] = None,
    only: Annotated[list[str] | None, typer.Option(help="Run only these tasks (repeatable)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout")] = False,
) -> None:
    """Run an evaluation suite and report per task success, steps, tokens and time."""
    from agentfleet.evals import render_table, run_suite

    settings = load_settings()
    if model_url:
        settings = settings.model_copy(update={"gpt_oss_url": model_url})
    try:
        with model_endpoint(settings, _say, model) as configured:
            report = run_suite(
                suite_dir,
                configured,
                model_url=str(configured.gpt_oss_url),
                model=model or configured.model,
                profile=profile,
                only=only or None,
                progress=lambda r: err.print(f"{'✓' if r.success else '✗'} {r.name} ({r.wall_s:.0f}s)"),
            )
    except AgentFleetError as exc:
        err.print(f"[red]eval failed:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if as_json:
        out.print_json(json.dumps(report.to_json()))
    else:
        out.print(render_table(report))
