"""`agentfleet eval`: run an evaluation suite against a model and report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from agentfleet.cli.console import err, out
from agentfleet.cli.llm import say
from agentfleet.errors import AgentFleetError
from agentfleet.llm.endpoint import model_endpoint
from agentfleet.settings import load_settings


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
        with model_endpoint(settings, say, model) as configured:
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
