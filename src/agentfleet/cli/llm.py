"""`agentfleet llm …` (the embedded model) and `agentfleet eval` (the evaluation harness)."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from agentfleet.cli.console import err, out
from agentfleet.errors import AgentFleetError
from agentfleet.settings import load_settings

llm_app = typer.Typer(help="The embedded CPU model used when GPT_OSS_URL is not set.", no_args_is_help=True)


def say(line: str) -> None:
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
        with serve_embedded(settings, name, progress=say, port=port) as server:
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
