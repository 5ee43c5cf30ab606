"""Workspace preparation against real git repositories: mirrors, checkouts, setup reuse, inputs,
patches and pushed branches."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path
from typing import Any

import pytest

from agentfleet.agent.workspace import (
    PreparedWorkspace,
    RepoCheckout,
    SetupRun,
    prepare_workspace,
    push_branch,
    write_changes,
)
from agentfleet.errors import InvalidRequestError, WorkspaceError
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.locks import locked
from agentfleet.names import workspace_id
from agentfleet.runtime.git import redact_text, run_git
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.repos import commit_files, git, make_repo


def diff_against_base(checkout: RepoCheckout) -> str:
    """The patch write_changes makes, as text."""
    out = io.BytesIO()
    write_changes(checkout, out, limit=1 << 30)
    return out.getvalue().decode("utf-8", "surrogateescape")


def diff_stat(checkout: RepoCheckout) -> str:
    return write_changes(checkout, io.BytesIO(), limit=1 << 30).stat


class SubprocessSetup:
    """Runs setup scripts with sh, unsandboxed, and counts the calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[Path, str]] = []

    def __call__(self, cwd: Path, script: str) -> SetupRun:
        self.calls.append((cwd, script))
        proc = subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)
        return SetupRun(exit_code=proc.returncode, output=proc.stdout + proc.stderr)


class Run:
    """One preparation: the workspace, its events and its task."""

    def __init__(self, settings: Settings, run_setup: SubprocessSetup | None = None, **request: Any) -> None:
        self.events: list[dict[str, Any]] = []
        self.task = Task(request=TaskRequest(query="do it", **request))
        store = LocalArtifactStore(settings.artifacts_dir)
        self.ws: PreparedWorkspace = prepare_workspace(self.task, settings, store, emit=self._emit, run_setup=run_setup)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        assert kind == "workspace"
        self.events.append(data)

    def step(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["step"] == name]

    def action(self, name: str) -> list[str]:
        return [e["action"] for e in self.step(name)]


@pytest.fixture
def origin(repo_factory) -> Path:
    return repo_factory({"README.md": "hello\n", ".gitignore": "build/\n.venv/\n"}, name="project")


def test_the_first_task_mirrors_the_repository_and_checks_out_its_default_branch(origin, settings) -> None:
    git(origin, "switch", "-q", "-c", "trunk")
    trunk = commit_files(origin, {"trunk.txt": "on trunk\n"}, "trunk work")
    git(origin, "switch", "-q", "main")
    git(origin, "symbolic-ref", "HEAD", "refs/heads/trunk")
    run = Run(settings, repo_url=str(origin))
    mirror = settings.mirrors_dir / f"{workspace_id(str(origin))}.git"
    assert git(mirror, "rev-parse", "--is-bare-repository") == "true"
    assert [p.name for p in settings.mirrors_dir.iterdir() if p.name.startswith(".tmp-")] == []
    repo = run.ws.repos[0]
    assert run.ws.root == repo.path == settings.workspaces_dir / run.task.workspace_id
    assert repo.base_commit == trunk and (repo.path / "trunk.txt").read_text() == "on trunk\n"
    assert git(repo.path, "remote", "get-url", "origin") == str(origin)
    assert git(repo.path, "config", "user.name") == settings.git_author_name
    assert run.action("mirror") == ["created"] and run.action("checkout") == ["cloned"]
    assert run.step("checkout")[0]["commit"] == trunk
    assert run.action("setup") == ["none"] and run.step("files") == [{"step": "files", "count": 0}]
    assert run.ws.setup == "none"


def test_a_second_task_fetches_new_commits_and_reuses_the_setup(origin, settings) -> None:
    setup = SubprocessSetup()
    options = {"setup": "mkdir -p .venv && echo installed > .venv/done"}
    first = Run(settings, setup, repo_url=str(origin), options=options)
    new_head = commit_files(origin, {"new.txt": "new\n"}, "later work")
    second = Run(settings, setup, repo_url=str(origin), options=options)
    assert second.action("mirror") == ["fetched"] and second.action("checkout") == ["reused"]
    repo = second.ws.repos[0]
    assert repo.base_commit == new_head and (repo.path / "new.txt").read_text() == "new\n"
    assert first.ws.setup == "ran" and second.ws.setup == "reused" and len(setup.calls) == 1
    assert (repo.path / ".venv" / "done").read_text() == "installed\n"
    marker = settings.setup_cache_dir / first.task.workspace_id / f"{second.step('setup')[0]['hash']}.json"
    assert marker.is_file()


def test_a_lockfile_change_runs_the_repository_setup_again(repo_factory, settings) -> None:
    origin = repo_factory({
        "requirements.txt": "requests==2.0\n",
        ".agentfleet/setup.sh": "echo ran >> setup.log\n",
        ".gitignore": "setup.log\n",
    })  # fmt: skip
    setup = SubprocessSetup()
    first = Run(settings, setup, repo_url=str(origin))
    Run(settings, setup, repo_url=str(origin))
    commit_files(origin, {"requirements.txt": "requests==3.0\n"}, "bump")
    third = Run(settings, setup, repo_url=str(origin))
    assert [e["action"] for e in first.events + third.events if e["step"] == "setup"] == ["ran", "ran"]
    assert len(setup.calls) == 2 and setup.calls[0] == (first.ws.root, "echo ran >> setup.log\n")
    assert (third.ws.root / "setup.log").read_text() == "ran\nran\n"


def test_a_failed_setup_says_why_and_leaves_no_marker(origin, settings) -> None:
    setup = SubprocessSetup()
    options = {"setup": "echo 'no such package: frobnicate'; exit 3"}
    with pytest.raises(WorkspaceError, match=r"exit code 3(.|\n)*no such package: frobnicate"):
        Run(settings, setup, repo_url=str(origin), options=options)
    with pytest.raises(WorkspaceError):
        Run(settings, setup, repo_url=str(origin), options=options)
    assert len(setup.calls) == 2
    assert not list(settings.setup_cache_dir.rglob("*.json"))


def test_a_setup_without_a_runner_is_skipped_visibly(origin, settings) -> None:
    run = Run(settings, None, repo_url=str(origin), options={"setup": "true"})
    assert run.ws.setup == "none" and run.step("setup")[0]["reason"] == "no setup runner here"


def test_a_ref_can_be_a_branch_a_tag_or_a_commit(origin, settings) -> None:
    git(origin, "tag", "v1")
    tagged = git(origin, "rev-parse", "HEAD")
    git(origin, "switch", "-q", "-c", "feature")
    feature = commit_files(origin, {"feature.txt": "f\n"}, "feature")
    git(origin, "switch", "-q", "main")
    main = commit_files(origin, {"main.txt": "m\n"}, "main work")
    for ref, expected in [("feature", feature), ("v1", tagged), (main[:10], main), (feature, feature)]:
        repo = Run(settings, repo_url=str(origin), ref=ref).ws.repos[0]
        assert (repo.base_commit, repo.ref) == (expected, ref)
        assert git(repo.path, "rev-parse", "HEAD") == expected
    assert (repo.path / "feature.txt").exists() and not (repo.path / "main.txt").exists()


def test_an_unknown_ref_is_an_error_that_names_it(origin, settings) -> None:
    with pytest.raises(WorkspaceError, match=r"ref 'nope' not found in .*project; give an existing branch"):
        Run(settings, repo_url=str(origin), ref="nope")


def test_several_repositories_each_get_a_subfolder(repo_factory, settings) -> None:
    alpha = repo_factory({"a.txt": "a\n"}, name="alpha")
    beta = repo_factory({"b.txt": "b\n"}, name="beta")
    Run(settings, repo_url=str(alpha))  # the same workspace held one repository before
    run = Run(settings, repo_url=str(alpha), repos=[str(beta)])
    root = run.ws.root
    assert [r.path for r in run.ws.repos] == [root / "alpha", root / "beta"]
    assert not (root / ".git").exists() and not (root / "a.txt").exists()
    assert (root / "alpha" / "a.txt").is_file() and (root / "beta" / "b.txt").is_file()
    assert git(root / "beta", "remote", "get-url", "origin") == str(beta)
    assert run.step("reset") and run.action("mirror") == ["fetched", "created"]


def test_input_files_are_copied_in_and_left_out_of_the_patch(origin, settings) -> None:
    store = LocalArtifactStore(settings.artifacts_dir)
    store.put_bytes("uploads/data.csv", b"a,b\n1,2\n")
    store.put_bytes("uploads/spec.md", b"# spec\n")
    files = ["uploads/data.csv", "gs://some-bucket/uploads/spec.md"]
    run = Run(settings, repo_url=str(origin), files=files)
    inputs = run.ws.root / ".agentfleet" / "inputs"
    assert (inputs / "data.csv").read_bytes() == b"a,b\n1,2\n" and (inputs / "spec.md").read_text() == "# spec\n"
    assert run.step("files") == [{"step": "files", "count": 2}]
    assert diff_against_base(run.ws.repos[0]) == "" and diff_stat(run.ws.repos[0]) == ""
    later = Run(settings, repo_url=str(origin))
    assert list(inputs.iterdir()) == [] and later.step("files")[0]["count"] == 0
    with pytest.raises(WorkspaceError, match=r"'uploads/missing\.txt' was not found"):
        Run(settings, repo_url=str(origin), files=["uploads/missing.txt"])


def test_the_patch_and_stat_show_edited_and_new_files_and_apply_to_the_base(origin, settings, tmp_path) -> None:
    repo = Run(settings, repo_url=str(origin)).ws.repos[0]
    (repo.path / "README.md").write_text("hello, world\n")
    (repo.path / "src").mkdir()
    (repo.path / "src" / "new.py").write_text("print('new')\n")
    (repo.path / "logo.bin").write_bytes(bytes(range(256)))
    patch = diff_against_base(repo)
    assert "+hello, world" in patch and "new file mode" in patch and "GIT binary patch" in patch
    stat = diff_stat(repo)
    assert "README.md" in stat and "src/new.py" in stat and "3 files changed" in stat
    fresh = tmp_path / "fresh"
    git(tmp_path, "clone", "-q", str(origin), str(fresh))
    (tmp_path / "p.diff").write_text(patch)
    git(fresh, "apply", str(tmp_path / "p.diff"))
    assert (fresh / "logo.bin").read_bytes() == bytes(range(256))


def test_push_branch_puts_the_branch_on_the_origin(origin, settings, tmp_path) -> None:
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(origin), str(bare))
    run = Run(settings, repo_url=str(bare))
    repo = run.ws.repos[0]
    (repo.path / "README.md").write_text("changed\n")
    (repo.path / "added.txt").write_text("added\n")
    branch = f"agentfleet/{run.task.id}"
    push_branch(repo, branch, "AgentFleet: change the readme")
    assert git(bare, "show", f"{branch}:README.md") == "changed"
    assert git(bare, "show", f"{branch}:added.txt") == "added"
    assert git(bare, "log", "-1", "--format=%an <%ae>|%s|%P", branch) == (
        f"{settings.git_author_name} <{settings.git_author_email}>|AgentFleet: change the readme|{repo.base_commit}"
    )
    with pytest.raises(WorkspaceError, match="branch name '-x' is not valid"):
        push_branch(repo, "-x", "m")


def test_ignored_build_output_survives_the_next_task_and_stray_files_do_not(origin, settings) -> None:
    repo = Run(settings, repo_url=str(origin)).ws.repos[0]
    (repo.path / "build").mkdir()
    (repo.path / "build" / "out.o").write_text("object\n")
    (repo.path / "stray.txt").write_text("left behind\n")
    (repo.path / "README.md").write_text("edited by the last task\n")
    Run(settings, repo_url=str(origin))
    assert (repo.path / "build" / "out.o").read_text() == "object\n"
    assert not (repo.path / "stray.txt").exists()
    assert (repo.path / "README.md").read_text() == "hello\n"


def test_environments_and_caches_stay_out_of_the_patch_even_without_a_gitignore(repo_factory, settings) -> None:
    origin = repo_factory({"app.py": "print('app')\n"})
    setup = SubprocessSetup()
    options = {"setup": "mkdir -p .venv node_modules/x && touch .venv/python node_modules/x/index.js"}
    repo = Run(settings, setup, repo_url=str(origin), options=options).ws.repos[0]
    (repo.path / "__pycache__").mkdir()
    (repo.path / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00")
    (repo.path / "app.py").write_text("print('changed')\n")
    assert diff_stat(repo).splitlines()[0].split() == ["app.py", "|", "2", "+-"]
    again = Run(settings, setup, repo_url=str(origin), options=options)
    assert again.ws.setup == "reused" and (repo.path / ".venv" / "python").exists()


def test_hooks_and_config_the_agent_planted_in_git_never_run(origin, settings, tmp_path) -> None:
    repo = Run(settings, repo_url=str(origin)).ws.repos[0]
    canary = tmp_path / "planted-command-ran"
    hooks = repo.path / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    for hook in ("post-checkout", "pre-commit", "pre-push"):
        (hooks / hook).write_text(f"#!/bin/sh\ntouch {canary}\n")
        (hooks / hook).chmod(0o755)
    git(repo.path, "config", "core.fsmonitor", f"touch {canary}")
    git(repo.path, "config", "diff.external", f"touch {canary}")
    again = Run(settings, repo_url=str(origin))
    assert again.action("checkout") == ["reused"]
    (repo.path / "README.md").write_text("x\n")
    git(repo.path, "config", "core.fsmonitor", f"touch {canary}")  # planted again after preparing
    assert "+x" in diff_against_base(again.ws.repos[0])
    assert not canary.exists()


def test_a_git_folder_holding_a_symlink_is_refused_then_made_again(origin, settings, tmp_path) -> None:
    repo = Run(settings, repo_url=str(origin)).ws.repos[0]
    (repo.path / ".git" / "info" / "exclude").unlink()
    (repo.path / ".git" / "info" / "exclude").symlink_to(tmp_path / "outside")
    with pytest.raises(WorkspaceError, match=r"not a plain \.git folder"):
        diff_against_base(repo)
    again = Run(settings, repo_url=str(origin))
    assert again.action("checkout") == ["cloned"] and not (tmp_path / "outside").exists()
    assert not (repo.path / ".git" / "info" / "exclude").is_symlink()


def test_a_repository_that_cannot_be_fetched_leaves_no_mirror(settings, tmp_path) -> None:
    missing = tmp_path / "gone"
    mirrors = settings.mirrors_dir
    mirrors.mkdir(parents=True)
    (mirrors / f".tmp-{workspace_id(str(missing))}-dead").mkdir()  # a crash during a clone
    with pytest.raises(WorkspaceError, match="git clone failed"):
        Run(settings, repo_url=str(missing))
    assert [p.name for p in mirrors.iterdir() if not p.name.endswith(".lock")] == []
    make_repo(missing, {"f.txt": "f\n"})
    assert Run(settings, repo_url=str(missing)).action("mirror") == ["created"]


def test_git_errors_never_show_url_credentials(tmp_path) -> None:
    with pytest.raises(WorkspaceError) as caught:
        run_git(tmp_path, "ls-remote", "--", "https://someone:s3cret@127.0.0.1:9/repo.git")
    assert "s3cret" not in str(caught.value)
    said = "fatal: could not read from 'https://someone:s3cret@example.com/r.git' or ssh://git@host/x"
    assert redact_text(said) == "fatal: could not read from 'https://***@example.com/r.git' or ssh://***@host/x"


def test_a_git_command_that_runs_too_long_is_stopped(tmp_path) -> None:
    with pytest.raises(WorkspaceError, match="took longer than"):
        run_git(tmp_path, "-c", "alias.hang=!sleep 60", "hang", timeout=0.5)


def test_a_reset_forgets_what_persists_and_the_next_task_starts_afresh(origin, settings, tmp_path) -> None:
    from agentfleet.backends import build_backends
    from agentfleet.errors import ConflictError
    from agentfleet.names import snapshot_key
    from agentfleet.service import Service

    setup = SubprocessSetup()
    first = Run(settings, setup, repo_url=str(origin), options={"setup": "mkdir -p build && echo ran > build/s"})
    planted = first.ws.root / "build" / "planted.sh"  # ignored: it would survive into the next task
    planted.write_text("echo from the last task\n")
    backends = build_backends(settings)
    backends.artifacts.put_bytes(snapshot_key(first.task.workspace_id), b"an archive")
    service = Service(backends, settings)
    reset = service.reset_workspace(first.task.workspace_id)
    assert reset.removed == ["checkout", "setup markers", "snapshot"]
    assert not planted.exists() and not backends.artifacts.exists(snapshot_key(first.task.workspace_id))
    again = Run(settings, setup, repo_url=str(origin), options={"setup": "mkdir -p build && echo ran > build/s"})
    assert again.action("checkout") == ["cloned"] and again.action("setup") == ["ran"] and len(setup.calls) == 2
    attempt = settings.home / "locks" / f"{first.task.workspace_id}.attempt"  # held by an attempt at work
    with locked(attempt), pytest.raises(ConflictError, match="has a task dispatched or running"):
        service.reset_workspace(first.task.workspace_id)
    with pytest.raises(InvalidRequestError, match="is not one"):
        service.reset_workspace("../etc")
