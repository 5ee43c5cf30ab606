"""An evaluation harness: run a suite of small tasks against a model and score each one.

A suite is a directory with one folder per task: `<name>/task.json` (an `EvalTask` without
`name` and `path`) and `<name>/repo/`, the repository's files, or instead a `source`: a real
project's sdist from the package index (pinned by version and sha256, unpacked as data, never
built on the host), optionally with a mutation that plants a bug. Each task runs on a fresh git
repository made from those files, under its own AgentFleet home, then is scored by its
conditions: a shell `check` run in the sandbox in the task's workspace (exit 0 = success) and
`summary_contains`, regexes that must all match the final summary. The run's own status is
reported beside the score, not part of it. See evals/README.md for the format.

One unit, over ~300 lines: loading, running, scoring and reporting a suite share its models
(EvalTask, TaskScore, Report).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from rich.markup import escape
from rich.table import Table

from agentfleet.agent.work import work_task
from agentfleet.errors import AgentFleetError, describe_validation_error
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.runtime.sandbox import ExecResult, Sandbox, SandboxConfig, grant_workspace
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskOptions, TaskRequest
from agentfleet.testing.repos import make_repo, repo_from

logger = logging.getLogger(__name__)

TASK_FILE = "task.json"
REPO_DIR = "repo"
CHECK_TIMEOUT_S = 120
REASON_TAIL = 600
ANSWER_CHARS = 2000
INDEX_URL = "https://pypi.org/simple"
"""The package index sdists come from (its JSON simple API, PEP 691)."""


class EvalSuiteError(AgentFleetError, ValueError):
    """A suite cannot be loaded; the message names the file and what to fix."""


class Mutation(BaseModel):
    """A change made to the unpacked sdist before it is committed: `old` (found exactly once in
    `file`) becomes `new`. How a fix task plants its bug in a real project."""

    model_config = ConfigDict(extra="forbid")

    file: str = Field(min_length=1)
    old: str = Field(min_length=1)
    new: str


class SdistSource(BaseModel):
    """A real project as the package index has it: `sdist` is `name==version`, `sha256` its digest."""

    model_config = ConfigDict(extra="forbid")

    sdist: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!_-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    mutate: list[Mutation] = Field(default_factory=list)

    @property
    def filename(self) -> str:
        name, version = self.sdist.split("==")
        return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}.tar.gz"


class EvalTask(BaseModel):
    """One task of a suite: `task.json` plus the `name` and `path` of its folder."""

    model_config = ConfigDict(extra="forbid")

    name: str
    query: str = Field(min_length=1)
    kind: Literal["summarize", "locate", "fix", "add", "config"]
    check: str | None = Field(None, min_length=1)
    summary_contains: list[str] = Field(default_factory=list)
    max_steps: int = Field(10, ge=1, le=1000)
    timeout_s: int = Field(300, ge=10, le=86_400)
    source: SdistSource | None = None
    """A real project's sdist instead of `repo/`."""
    path: Path

    @field_validator("summary_contains")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _conditions(self) -> EvalTask:
        if self.check is None and not self.summary_contains:
            raise ValueError("give a condition: check, summary_contains or both")
        return self

    @property
    def repo(self) -> Path:
        return self.path / REPO_DIR


def load_task(task_dir: Path) -> EvalTask:
    """The task in `task_dir`; EvalSuiteError naming the file when it is malformed."""
    source = task_dir / TASK_FILE
    try:
        data = json.loads(source.read_text())
    except (OSError, ValueError) as exc:
        raise EvalSuiteError(f"{source}: cannot read it as JSON: {exc}") from None
    if not isinstance(data, dict):
        raise EvalSuiteError(f"{source}: expected a JSON object")
    reserved = sorted({"name", "path"} & data.keys())
    if reserved:
        raise EvalSuiteError(f"{source}: {', '.join(reserved)}: set by the harness from the folder; remove it")
    try:
        task = EvalTask.model_validate({**data, "name": task_dir.name, "path": task_dir})
    except ValidationError as exc:
        raise EvalSuiteError(f"{source}: {describe_validation_error(exc)}") from None
    if task.source is not None:
        if task.repo.exists():
            raise EvalSuiteError(f"{task.repo}: a task with a `source` has no repo/ folder; remove one of them")
    elif not task.repo.is_dir() or not any(task.repo.iterdir()):
        raise EvalSuiteError(f"{task.repo}: missing or empty; put the repository's files there (or give a source)")
    return task


def load_suite(suite_dir: Path) -> list[EvalTask]:
    """Every task folder under `suite_dir`, sorted by name."""
    if not suite_dir.is_dir():
        raise EvalSuiteError(f"{suite_dir}: no such suite directory")
    folders = sorted(p for p in suite_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    if not folders:
        raise EvalSuiteError(f"{suite_dir}: the suite is empty; add <name>/{TASK_FILE} and <name>/{REPO_DIR}/")
    for folder in folders:
        if not (folder / TASK_FILE).is_file():
            raise EvalSuiteError(f"{folder}: no {TASK_FILE}; every folder of a suite is a task")
    return [load_task(folder) for folder in folders]


# --- results ---------------------------------------------------------------------------------


@dataclass
class EvalResult:
    name: str
    kind: str
    success: bool
    status: str
    steps: int = 0
    tool_calls: int = 0
    tokens: int = 0
    wall_s: float = 0.0
    reason: str = ""
    answer: str = ""
    """The agent's final answer, cut to ANSWER_CHARS (what a summary or locate task was scored on)."""


@dataclass(frozen=True)
class EvalTotals:
    tasks: int
    succeeded: int
    success_rate: float
    mean_steps: float
    total_tokens: int
    mean_wall_s: float


@dataclass
class EvalReport:
    results: list[EvalResult] = field(default_factory=list)

    @property
    def totals(self) -> EvalTotals:
        count = len(self.results)
        succeeded = sum(r.success for r in self.results)
        return EvalTotals(
            tasks=count,
            succeeded=succeeded,
            success_rate=succeeded / count if count else 0.0,
            mean_steps=sum(r.steps for r in self.results) / count if count else 0.0,
            total_tokens=sum(r.tokens for r in self.results),
            mean_wall_s=round(sum(r.wall_s for r in self.results) / count, 2) if count else 0.0,
        )

    def to_json(self) -> dict[str, Any]:
        return {"results": [asdict(r) for r in self.results], "totals": asdict(self.totals)}


# --- running ---------------------------------------------------------------------------------


def prepare_repo(task: EvalTask, dest: Path) -> Path:
    """A git repository at `dest` holding the task's files in one commit on branch main."""
    if task.source is None:
        return repo_from(task.repo, dest, f"eval task {task.name}")
    unpack_sdist(fetch_sdist(task.source), dest)
    for change in task.source.mutate:
        target = dest / change.file
        text = target.read_text() if target.is_file() else ""
        if text.count(change.old) != 1:
            raise EvalSuiteError(f"{task.name}: the mutation's `old` is not found exactly once in {change.file}")
        target.write_text(text.replace(change.old, change.new))
    return make_repo(dest, {}, f"eval task {task.name}: {task.source.sdist}")


def sdist_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "agentfleet" / "sdists"


def fetch_sdist(source: SdistSource) -> Path:
    """The sdist file, from the cache or downloaded from the index once; checked against its sha256."""
    cached = sdist_cache() / source.filename
    if cached.is_file() and hashlib.sha256(cached.read_bytes()).hexdigest() == source.sha256:
        return cached
    import httpx

    name = source.sdist.split("==")[0]
    accept = {"Accept": "application/vnd.pypi.simple.v1+json"}
    try:
        listing = httpx.get(f"{INDEX_URL}/{name}/", headers=accept, timeout=60, follow_redirects=True)
        listing.raise_for_status()
        files = {f["filename"].lower(): f["url"] for f in listing.json().get("files", [])}
        url = files.get(source.filename) or files.get(source.filename.replace("_", "-"))
        if url is None:
            raise EvalSuiteError(f"{source.sdist}: the index has no sdist {source.filename}")
        data = httpx.get(url, timeout=120, follow_redirects=True).raise_for_status().content
    except httpx.HTTPError as exc:
        raise EvalSuiteError(f"{source.sdist}: cannot download the sdist from {INDEX_URL}: {exc}") from None
    if hashlib.sha256(data).hexdigest() != source.sha256:
        raise EvalSuiteError(f"{source.sdist}: the downloaded sdist does not match its sha256; not used")
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, cached)
    return cached


def unpack_sdist(archive: Path, dest: Path) -> None:
    """The sdist's files under `dest`, its top folder stripped, as plain data (tarfile's `data`
    filter: no links out, no devices, no absolute paths); its build byproducts left out."""
    with tempfile.TemporaryDirectory(prefix="agentfleet-sdist-") as tmp, tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
        (top,) = Path(tmp).iterdir()
        for junk in [*top.rglob("__pycache__"), *top.glob("*.egg-info")]:
            shutil.rmtree(junk, ignore_errors=True)
        shutil.copytree(top, dest, symlinks=True, dirs_exist_ok=True)


def run_check(command: str, workdir: Path, settings: Settings) -> ExecResult:
    """Run a check in the sandbox (no network) in `workdir`, which the sandbox user is given."""
    config = SandboxConfig.from_settings(settings, network=False)
    grant_workspace(workdir, config.uid, config.gid)
    return Sandbox(workdir, config).run(command, timeout_s=CHECK_TIMEOUT_S)


def missing_facts(patterns: list[str], summary: str) -> list[str]:
    """The patterns that do not match `summary` (case-insensitive)."""
    return [p for p in patterns if not re.search(p, summary, re.IGNORECASE)]


def _tail(text: str, limit: int = REASON_TAIL) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "…" + text[-limit:]


def _task_settings(settings: Settings, home: Path, model_url: str, model: str | None, profile: str | None) -> Settings:
    update: dict[str, Any] = {"home": home, "gpt_oss_url": model_url}
    if model is not None:
        update["model"] = model
    if profile is not None:
        update["model_profile"] = profile
    return settings.model_copy(update=update)


def _score(task: EvalTask, final: Task, settings: Settings) -> tuple[bool, str]:
    """Whether every condition holds, and why not."""
    if final.result is None:
        return False, f"task error: {final.error}"
    problems = []
    missing = missing_facts(task.summary_contains, final.result.summary)
    if missing:
        problems.append("summary lacks " + ", ".join(f"/{p}/" for p in missing))
    if task.check is not None:
        workdir = settings.workspaces_dir / final.workspace_id
        checked = run_check(task.check, workdir, settings)
        if checked.exit_code != 0:
            output = checked.output.replace(f"{workdir.resolve()}/", "")
            problems.append(f"check failed ({checked.render().splitlines()[-1].strip('[]')}): {_tail(output)}")
    if problems and final.error:
        problems.append(f"run: {final.error}")
    return not problems, "; ".join(problems)


def run_eval_task(task: EvalTask, settings: Settings, workdir: Path) -> EvalResult:
    """Run one task in `workdir` (a fresh directory it may fill) and score it."""
    repo = prepare_repo(task, workdir / REPO_DIR / task.name)
    options = TaskOptions(max_steps=task.max_steps, timeout_s=task.timeout_s, model=settings.model)
    request = TaskRequest(query=task.query, repo_url=str(repo), options=options)
    started = time.monotonic()
    final = work_task(Task(request=request), settings, LocalArtifactStore(settings.artifacts_dir))
    wall_s = time.monotonic() - started
    success, reason = _score(task, final, settings)
    usage = final.usage
    return EvalResult(
        name=task.name,
        kind=task.kind,
        success=success,
        status=final.status.value,
        steps=usage.llm_calls,
        tool_calls=usage.tool_calls,
        tokens=usage.total_tokens,
        wall_s=round(wall_s, 2),
        reason=reason,
        answer=final.result.summary[:ANSWER_CHARS] if final.result else "",
    )


def _select(tasks: list[EvalTask], only: list[str] | None) -> list[EvalTask]:
    if only is None:
        return tasks
    unknown = sorted(set(only) - {t.name for t in tasks})
    if unknown:
        raise EvalSuiteError(f"no such task in the suite: {', '.join(unknown)}")
    return [t for t in tasks if t.name in only]


def run_suite(
    suite_dir: Path,
    settings: Settings,
    *,
    model_url: str,
    model: str | None = None,
    profile: str | None = None,
    only: list[str] | None = None,
    progress: Callable[[EvalResult], None] | None = None,
) -> EvalReport:
    """Run the suite's tasks one after another, each on a fresh repository and home; never stops early."""
    report = EvalReport()
    for task in _select(load_suite(suite_dir), only):
        with tempfile.TemporaryDirectory(prefix=f"agentfleet-eval-{task.name}-", ignore_cleanup_errors=True) as tmp:
            configured = _task_settings(settings, Path(tmp) / "home", model_url, model, profile)
            try:
                result = run_eval_task(task, configured, Path(tmp))
            except Exception as exc:  # top-level handler per task: the suite goes on
                logger.exception("eval task crashed", extra={"eval_task": task.name})
                result = EvalResult(task.name, task.kind, False, "ERROR", reason=f"harness error: {exc!r}")
        report.results.append(result)
        if progress is not None:
            progress(result)
    return report


# --- rendering -------------------------------------------------------------------------------


def _truncate(text: str, limit: int = 80) -> str:
    """The head and the tail of `text` (a check's last lines say the most)."""
    if len(text) <= limit:
        return text
    head = limit // 3
    return text[:head] + "…" + text[-(limit - head - 1) :]


def render_table(report: EvalReport) -> Table:
    """One row per task and a totals row, for people."""
    table = Table(title="AgentFleet eval")
    for header in ("task", "kind", "ok", "status"):
        table.add_column(header)
    for header in ("steps", "tokens", "time"):
        table.add_column(header, justify="right")
    table.add_column("reason")
    for r in report.results:
        mark = "[green]✓[/green]" if r.success else "[red]✗[/red]"
        cells = [str(r.steps), f"{r.tokens:,}", f"{r.wall_s:.1f}s", escape(_truncate(r.reason))]
        table.add_row(escape(r.name), r.kind, mark, r.status, *cells)
    t = report.totals
    table.add_section()
    table.add_row(
        f"total ({t.tasks})",
        "",
        f"{t.succeeded}/{t.tasks}",
        f"{t.success_rate:.0%}",
        f"{t.mean_steps:.1f} avg",
        f"{t.total_tokens:,}",
        f"{t.mean_wall_s:.1f}s avg",
        "",
        style="bold",
    )
    return table
