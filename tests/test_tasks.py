"""The task model: validation that says what to fix, and stable workspace ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from agentfleet.errors import describe_validation_error
from agentfleet.names import normalize_repo_url, workspace_id
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest, TaskStatus

CLOUD = Settings(backend="gcp").validation_context()
LOCAL = Settings(backend="local").validation_context()
GOOD = "https://github.com/acme/widgets.git"


def reject(body: dict, context: dict = CLOUD) -> str:
    with pytest.raises(ValidationError) as info:
        TaskRequest.model_validate(body, context=context)
    return describe_validation_error(info.value)


BAD_INPUTS = [
    ({"query": "x", "repo_url": GOOD, "colour": "red"}, "colour: Extra inputs are not permitted"),
    ({"query": "   ", "repo_url": GOOD}, "query is empty"),
    ({"query": "x" * 40_000, "repo_url": GOOD}, "the limit is 32000"),
    ({"query": "x"}, "give a repository"),
    ({"query": "x", "repo_url": "ftp://example.com/r.git"}, "scheme 'ftp' is not supported"),
    ({"query": "x", "repo_url": "http://example.com/r.git"}, "scheme 'http' is not supported"),
    ({"query": "x", "repo_url": "--upload-pack=touch /tmp/p"}, "must not start with '-'"),
    ({"query": "x", "repo_url": "/srv/repo"}, "local paths and file:// URLs are not allowed"),
    ({"query": "x", "repo_url": "file:///srv/repo"}, "local paths and file:// URLs are not allowed"),
    ({"query": "x", "repo_url": "https://user:hunter2@github.com/a/b"}, "embeds credentials"),
    ({"query": "x", "repo_url": "https://ghp_token@github.com/a/b"}, "embeds credentials"),
    ({"query": "x", "repo_url": "https://github.com/a b"}, "spaces or control characters"),
    ({"query": "x", "repos": [f"https://github.com/a/r{i}" for i in range(11)]}, "the limit is 10"),
    ({"query": "x", "repo_url": GOOD, "files": [f"f{i}" for i in range(51)]}, "the limit is 50"),
    ({"query": "x", "repo_url": GOOD, "repos": ["https://GitHub.com/acme/widgets"]}, "listed twice"),
    ({"query": "x", "repo_url": GOOD, "ref": "--force"}, "ref must be a branch, tag or commit"),
    ({"query": "x", "repo_url": GOOD, "files": ["-rf"]}, "not a valid artifact key"),
    ({"query": 5, "repo_url": GOOD}, "query: Input should be a valid string"),
    ({"query": "x", "repo_url": GOOD, "options": {"max_steps": 0}}, "greater than or equal to 1"),
    ({"query": "x", "repo_url": GOOD, "options": {"turbo": True}}, "options.turbo: Extra inputs"),
]


@pytest.mark.parametrize(("body", "message"), BAD_INPUTS, ids=[m for _, m in BAD_INPUTS])
def test_a_bad_request_is_rejected_with_a_message_that_says_what_to_fix(body: dict, message: str) -> None:
    assert message in reject(body)


def test_a_credential_in_a_url_is_never_echoed_back() -> None:
    message = reject({"query": "x", "repo_url": "https://bob:s3cr3t-token@github.com/a/b"})
    assert "s3cr3t-token" not in message
    assert "***@github.com" in message


def test_local_paths_are_accepted_where_the_local_default_allows_them(tmp_path) -> None:
    request = TaskRequest.model_validate({"query": "x", "repo_url": str(tmp_path)}, context=LOCAL)
    assert request.primary_repo == str(tmp_path)


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/Acme/Widgets.git",
        "https://github.com/acme/widgets",
        "https://github.com/acme/widgets/",
        "git@github.com:acme/widgets.git",
        "ssh://git@github.com/acme/widgets",
        "ssh://git@github.com:22/acme/widgets.git",
    ],
)
def test_the_same_repository_written_differently_gets_the_same_workspace(url: str) -> None:
    assert workspace_id(url) == workspace_id("https://github.com/acme/widgets")
    assert workspace_id(url).startswith("acme-widgets-")


def test_different_repositories_get_different_workspaces() -> None:
    assert workspace_id("https://github.com/acme/widgets") != workspace_id("https://gitlab.com/acme/widgets")


@given(st.text(min_size=1, max_size=200))
def test_a_workspace_id_is_always_a_valid_cloud_run_job_suffix(path: str) -> None:
    wid = workspace_id(f"https://example.com/{path}")
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", wid)
    assert len(f"agent-{wid}") <= 63


def test_normalization_strips_credentials_and_suffixes() -> None:
    assert normalize_repo_url("ssh://git@Example.COM/Team/Repo.git") == "example.com/team/repo"


def test_a_task_starts_queued_on_attempt_one_with_its_workspace() -> None:
    task = Task(request=TaskRequest(query="x", repo_url=GOOD))
    assert task.status is TaskStatus.QUEUED
    assert task.attempt == 1
    assert task.workspace_id == workspace_id(GOOD)
    assert not task.status.final and TaskStatus.CANCELLED.final


def test_multi_repository_requests_list_every_repository_with_its_ref() -> None:
    request = TaskRequest(
        query="x",
        repo_url=GOOD,
        ref="main",
        repos=["https://github.com/acme/gears", {"url": "https://github.com/acme/cogs", "ref": "v1"}],
    )
    assert [(s.url, s.ref) for s in request.repo_specs()] == [
        (GOOD, "main"),
        ("https://github.com/acme/gears", "main"),
        ("https://github.com/acme/cogs", "v1"),
    ]


MCP = Settings(  # type: ignore[call-arg]
    _env_file=None,
    mcp_servers={"db": "https://db-toolbox.example.run.app/mcp"},
    mcp_allowed_urls=["https://mcp.example.com/"],
).validation_context()


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (
            {"name": "probe", "url": "http://127.0.0.1:8080/mcp"},
            "MCP server URL http://127.0.0.1:8080/mcp is not allowed",
        ),
        ({"name": "meta", "url": "http://169.254.169.254/computeMetadata/v1/"}, "is not allowed here"),
        ({"name": "near", "url": "https://mcp.example.com.evil.net/mcp"}, "is not allowed here"),
        ({"name": "gitlab"}, "MCP server 'gitlab' is not configured here (configured: a2a, code, computer, db, media)"),
        ({"name": "db", "url": "https://mcp.example.com/db"}, "give its name alone"),
        ({"name": "x", "url": "https://user:pw@mcp.example.com/x"}, "should match pattern"),
    ],
)
def test_an_mcp_server_the_deployment_does_not_allow_is_refused(server: dict, message: str) -> None:
    said = reject({"query": "x", "repo_url": GOOD, "options": {"mcp_servers": [server]}}, MCP)
    assert message in said and "pw@" not in said


def test_configured_and_allowed_mcp_servers_are_accepted() -> None:
    servers = [{"name": "db"}, {"name": "tools", "url": "https://mcp.example.com/tools/mcp"}]
    request = TaskRequest.model_validate(
        {"query": "x", "repo_url": GOOD, "options": {"mcp_servers": servers}}, context=MCP
    )
    assert [s.url for s in request.options.mcp_servers] == [None, "https://mcp.example.com/tools/mcp"]


def test_a_task_made_from_a_checked_request_does_not_check_it_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """A guard, not a timing: one check of the repositories per request (budget 1), however many
    Tasks are made from it; a request given as a dict is still checked in full."""
    import agentfleet.tasks as tasks

    checked: list[str] = []
    real = tasks.check_repo_url

    def counting(url: str, **kwargs: bool) -> str:
        checked.append(url)
        return real(url, **kwargs)

    monkeypatch.setattr(tasks, "check_repo_url", counting)
    request = TaskRequest(query="fix it", repo_url="https://github.com/acme/widgets")
    assert len(checked) == 1

    Task(request=request)
    Task(request=request)
    assert len(checked) == 1
    Task.model_validate({"request": {"query": "fix it", "repo_url": "https://github.com/acme/widgets"}})
    assert len(checked) == 2


def test_a_local_repository_is_resolved_once_per_validation_and_not_again_when_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression guard, not a timing: a local path's normal form resolves it (an lstat per part).
    Budget: one per repository to validate a request, one for the new task's workspace id, none to
    read the task back or move it (STORED)."""
    import agentfleet.names as names
    import agentfleet.tasks as tasks

    calls: list[str] = []
    real = names.normalize_repo_url

    def counting(url: str) -> str:
        calls.append(url)
        return real(url)

    monkeypatch.setattr(names, "normalize_repo_url", counting)
    monkeypatch.setattr(tasks, "normalize_repo_url", counting)
    repo = str(tmp_path / "repo")
    context = {"allow_local_repos": True}

    request = TaskRequest.model_validate({"query": "q", "repo_url": repo}, context=context)
    assert calls == [repo]
    task = Task(request=request)
    assert calls == [repo, repo]
    calls.clear()

    Task.model_validate_json(task.model_dump_json(), context=tasks.STORED)
    tasks.apply_transition(task, TaskStatus.DISPATCHED, {})
    assert calls == []
