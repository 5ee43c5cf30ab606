"""The host's own git on a checkout the agent has had: the patch, the stat and the pushed branch.

Nothing the agent or the repository wrote may make host git run a program (nested repositories
with their own config, hooks and filters) or hide what was changed (index flags, replace refs).
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
from pathlib import Path

import pytest

from agentfleet.agent.work import work_task
from agentfleet.agent.workspace import RepoCheckout, prepare_workspace, push_branch, write_changes
from agentfleet.errors import WorkspaceError
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.runtime.git import GIT_TOKEN_ENV, _env, run_git
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest, TaskStatus
from agentfleet.testing.repos import git, make_repo
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply
from tests.hostile import PLANTS, SECRET_KEY, fired, marker_dir, plant


def checkout(settings: Settings, origin: Path) -> RepoCheckout:
    task = Task(request=TaskRequest(query="q", repo_url=str(origin)))
    store = LocalArtifactStore(settings.artifacts_dir)
    return prepare_workspace(task, settings, store, emit=lambda *_: None, run_setup=None).repos[0]


def patch_of(repo: RepoCheckout) -> tuple[str, list[str]]:
    out = io.BytesIO()
    changes = write_changes(repo, out, limit=1 << 30)
    return out.getvalue().decode(), changes.nested


@pytest.fixture
def origin(repo_factory) -> Path:
    return repo_factory({"README.md": "hello\n", "app.py": "x = 1\n"}, name="project")


@pytest.mark.parametrize("name", PLANTS)
def test_a_nested_repository_never_makes_host_git_run_its_programs(name, origin, settings, tmp_path) -> None:
    repo = checkout(settings, origin)
    markers = marker_dir(tmp_path)
    nested = make_repo(repo.path / "third_party" / "dep", {"dep.py": "d = 1\n"})
    plant(nested, name, markers)
    (nested / "dep.py").write_text("d = 2\n")
    (nested / "new-in-dep.txt").write_text("n\n")
    (repo.path / "app.py").write_text("x = 2\n")
    patch, left_out = patch_of(repo)
    bare = tmp_path / "pushed.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    push_branch(dataclasses.replace(repo, fetch_url=str(bare)), "agentfleet/t", "m")
    assert fired(markers) == [], f"{name}: host git ran a program of the nested repository"
    assert "+x = 2" in patch and "dep.py" not in patch and "new-in-dep" not in patch
    assert left_out == ["third_party/dep"]
    assert git(bare, "ls-tree", "-r", "--name-only", "agentfleet/t").split() == ["README.md", "app.py"]


def test_a_submodule_checkout_is_left_out_of_the_patch_and_the_push(repo_factory, settings, tmp_path) -> None:
    dep = repo_factory({"dep.py": "d = 1\n"}, name="dep")
    origin = repo_factory({"README.md": "hello\n"}, name="with-submodule")
    git(origin, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(dep), "vendor/dep")
    git(origin, "commit", "-qm", "add a submodule")
    repo = checkout(settings, origin)
    assert (repo.path / "vendor" / "dep").is_dir(), "the gitlink's folder is there, empty"
    markers = marker_dir(tmp_path)
    cloned = make_repo(repo.path / "vendor" / "dep", {"dep.py": "d = 1\n", "more.py": "m = 1\n"})
    plant(cloned, "clean_filter", markers)
    (repo.path / "README.md").write_text("changed\n")
    patch, left_out = patch_of(repo)
    assert fired(markers) == [] and left_out == ["vendor/dep"]
    assert "+changed" in patch and "Subproject" not in patch and "more.py" not in patch


def test_index_flags_the_agent_set_cannot_hide_a_change(origin, settings) -> None:
    repo = checkout(settings, origin)
    (repo.path / "README.md").write_text("hidden change\n")
    (repo.path / "app.py").write_text("x = 'also hidden'\n")
    git(repo.path, "update-index", "--skip-worktree", "README.md")
    git(repo.path, "update-index", "--assume-unchanged", "app.py")
    assert git(repo.path, "status", "--porcelain") == "", "the agent's own git no longer shows them"
    patch, _ = patch_of(repo)
    assert "+hidden change" in patch and "+x = 'also hidden'" in patch


def test_a_replace_ref_cannot_swap_the_base_commit(origin, settings) -> None:
    repo = checkout(settings, origin)
    (repo.path / "README.md").write_text("fake base\n")
    git(repo.path, "add", "README.md")
    git(repo.path, "commit", "-qm", "pretend this is the base")
    fake = git(repo.path, "rev-parse", "HEAD")
    git(repo.path, "replace", repo.base_commit, fake)
    patch, _ = patch_of(repo)
    assert "-hello" in patch and "+fake base" in patch, "the patch is against the real base"


def test_a_setup_that_plants_a_filtered_nested_repository_runs_nothing_on_the_host(
    repo_factory, settings, tmp_path, monkeypatch
) -> None:
    """The reproduction: a repository's setup creates `third_party/dep/.git` with a clean filter;
    the model does nothing; the end-of-task diff used to run the filter as root."""
    monkeypatch.setenv("LLM_API_KEY", SECRET_KEY)
    markers = marker_dir(tmp_path)
    setup = (
        "set -e\nmkdir -p third_party/dep && cd third_party/dep && git init -q\n"
        f"printf '#!/bin/sh\\nid -u > {markers}/filter\\ncat\\n' > .git/f.sh && chmod +x .git/f.sh\n"
        'git config filter.x.clean "$PWD/.git/f.sh"\necho "* filter=x" > .gitattributes && echo data > f.txt\n'
    )
    origin = repo_factory({"README.md": "hello\n", ".agentfleet/setup.sh": setup})
    with ScriptedLLM([look(), reply("Nothing to do.")]) as llm:
        configured = settings.model_copy(update={"gpt_oss_url": llm.url})
        task = work_task(
            Task(request=TaskRequest(query="look", repo_url=str(origin))),
            configured,
            LocalArtifactStore(settings.artifacts_dir),
        )
    assert task.status is TaskStatus.SUCCEEDED, task.error
    assert fired(markers) == [], "the nested repository's filter ran on the host"
    assert task.result is not None and task.result.patch is None
    assert any("third_party/dep" in note for note in task.result.notes)


FILL = "protocol=https\nhost=git.example.com\npath=acme/widgets.git\n\n"


def test_the_git_token_is_the_only_credential_helper_and_stays_out_of_argv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    marker = tmp_path / "hostile-helper-ran"
    # a checkout's own helper (hostile data) would run a command of its own on the host
    subprocess.run(["git", "-C", str(repo), "config", "credential.helper", f"!touch {marker}; echo"], check=True)
    monkeypatch.setenv(GIT_TOKEN_ENV, "tok-123 with spaces")

    filled = run_git(repo, "credential", "fill", input=FILL)

    answer = dict(line.split("=", 1) for line in filled.stdout.splitlines())
    assert (answer["username"], answer["password"]) == ("x-access-token", "tok-123 with spaces")
    assert not marker.exists()
    # the token is read from the environment when git asks: no argument or config entry holds it
    assert [name for name, value in _env(None).items() if "tok-123" in value] == [GIT_TOKEN_ENV]


def test_without_a_token_git_asks_no_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    monkeypatch.delenv(GIT_TOKEN_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no helper of the machine's user either
    filled = run_git(repo, "credential", "fill", input=FILL, check=False)
    assert filled.returncode != 0 and "password=" not in filled.stdout


def test_a_git_that_hangs_is_stopped_at_its_limit_and_one_that_ends_is_left_alone(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    assert run_git(repo, "rev-parse", "HEAD", timeout=30).stdout.strip() == git(repo, "rev-parse", "HEAD")
    (repo / ".git" / "packed-refs").unlink(missing_ok=True)
    os.mkfifo(repo / ".git" / "packed-refs")  # git opens it to read the refs and waits for a writer
    with pytest.raises(WorkspaceError, match="took longer than"):
        run_git(repo, "for-each-ref", timeout=0.5)
