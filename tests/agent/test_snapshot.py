"""Workspace snapshots with the directory ArtifactStore: a restore into an empty home makes the
next task warm, an unchanged workspace uploads nothing, unsafe or corrupt archives are refused
or ignored, and the runner restores before the workspace and saves after the result."""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentfleet.agent.snapshot import SnapshotState, restore_snapshot, save_snapshot
from agentfleet.agent.work import work_task
from agentfleet.agent.workspace import SetupRun, prepare_workspace
from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.names import snapshot_key
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskEvent, TaskRequest, TaskStatus
from agentfleet.testing.repos import commit_files, git
from agentfleet.testing.scripted_llm import ScriptedLLM, look, reply

SETUP = "mkdir -p .venv/bin && echo installed >> .venv/done && ln -sf /usr/bin/env .venv/bin/python"


def sh_setup(cwd: Path, script: str) -> SetupRun:
    proc = subprocess.run(["sh", "-c", script], cwd=cwd, capture_output=True, text=True, timeout=60)
    return SetupRun(exit_code=proc.returncode, output=proc.stdout + proc.stderr)


class Machine:
    """One agent's machine: a home of its own, the artifact store shared with every other."""

    def __init__(self, settings: Settings, home: Path, store: LocalArtifactStore) -> None:
        self.settings = settings.model_copy(update={"home": home, "workspace_snapshots": True})
        self.store = store
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        assert kind == "workspace"
        self.events.append(data)

    def restore(self, task: Task) -> SnapshotState:
        return restore_snapshot(task, self.settings, self.store, self.emit)

    def work(self, task: Task) -> str:
        """restore → prepare the workspace → save; what the save did."""
        state = self.restore(task)
        prepare_workspace(task, self.settings, self.store, emit=self.emit, run_setup=sh_setup)
        return save_snapshot(state, task, self.settings, self.store, self.emit)

    def actions(self, step: str) -> list[str]:
        return [e["action"] for e in self.events if e["step"] == step]


@pytest.fixture
def origin(repo_factory) -> Path:
    return repo_factory({"README.md": "hello\n", ".gitignore": ".venv/\n"}, name="project")


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "bucket")


def a_task(origin: Path) -> Task:
    return Task(request=TaskRequest(query="do it", repo_url=str(origin), options={"setup": SETUP}))


def test_a_restore_into_an_empty_home_brings_back_the_mirror_checkout_and_setup(
    origin, settings, store, tmp_path
) -> None:
    first = Machine(settings, tmp_path / "first", store)
    assert first.work(a_task(origin)) == "saved"
    assert first.actions("snapshot") == ["none", "saved"] and first.actions("mirror") == ["created"]
    saved = next(e for e in first.events if e.get("action") == "saved")
    assert saved["bytes"] > 0 and saved["duration_s"] >= 0

    second = Machine(settings, tmp_path / "second", store)
    assert second.work(a_task(origin)) == "unchanged"
    assert second.actions("snapshot") == ["restored", "unchanged"]
    assert second.actions("mirror") == ["fetched"] and second.actions("checkout") == ["reused"]
    assert second.actions("setup") == ["reused"]
    checkout = second.settings.workspaces_dir / a_task(origin).workspace_id
    assert (checkout / ".venv" / "done").read_text() == "installed\n"
    assert (checkout / ".venv" / "bin" / "python").readlink() == Path("/usr/bin/env")


def test_a_task_that_fetched_nothing_new_and_ran_no_setup_uploads_nothing(origin, settings, store, tmp_path) -> None:
    machine = Machine(settings, tmp_path / "home", store)
    task = a_task(origin)
    machine.work(task)
    version = store.get_file_version(snapshot_key(task.workspace_id), tmp_path / "v1")
    state = machine.restore(task)
    prepare_workspace(task, machine.settings, store, emit=machine.emit, run_setup=sh_setup)
    (machine.settings.workspaces_dir / task.workspace_id / "edited.txt").write_text("the agent's work\n")
    assert save_snapshot(state, task, machine.settings, store, machine.emit) == "unchanged"
    assert store.get_file_version(snapshot_key(task.workspace_id), tmp_path / "v2") == version

    commit_files(origin, {"new.txt": "new\n"}, "later work")
    assert machine.work(a_task(origin)) == "saved"
    assert store.get_file_version(snapshot_key(task.workspace_id), tmp_path / "v3") != version


def test_the_snapshot_leaves_out_the_input_files(origin, settings, store, tmp_path) -> None:
    store.put_bytes("uploads/secret.csv", b"a,b\n")
    task = Task(request=TaskRequest(query="q", repo_url=str(origin), files=["uploads/secret.csv"]))
    assert Machine(settings, tmp_path / "home", store).work(task) == "saved"
    with tarfile.open(store.uri(snapshot_key(task.workspace_id))) as tar:
        names = tar.getnames()
    assert f"workspaces/{task.workspace_id}/README.md" in names
    assert f"mirrors/{task.workspace_id}.git/HEAD" in names
    assert not [n for n in names if "inputs" in n]
    assert names.index(f"workspaces/{task.workspace_id}") < names.index(f"workspaces/{task.workspace_id}/README.md")


# --- archives that must not be trusted ----------------------------------------------------------


def member(
    name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"x", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o755 if kind == tarfile.DIRTYPE else 0o644
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def store_archive(store: LocalArtifactStore, task: Task, members: list[tuple[tarfile.TarInfo, bytes]]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    store.put_bytes(snapshot_key(task.workspace_id), buffer.getvalue())
    return store.get_file_version(snapshot_key(task.workspace_id), Path(store.root) / ".probe")


Members = list[tuple[tarfile.TarInfo, bytes]]
UNSAFE: dict[str, tuple[str, Callable[[str, Path], Members]]] = {
    "a member that climbs out with ..": ("'..'", lambda ws, out: [member(f"workspaces/{ws}/../../../{out.name}/x")]),
    "a member with an absolute path": ("absolute path", lambda ws, out: [member(f"{out}/pwned")]),
    "a symlink out and a file written through it": ("through a symbolic link", lambda ws, out: [
        member(f"workspaces/{ws}", tarfile.DIRTYPE),
        member(f"workspaces/{ws}/escape", tarfile.SYMTYPE, link=str(out)),
        member(f"workspaces/{ws}/escape/pwned"),
    ]),
    "a relative symlink out and a file written through it": ("through a symbolic link", lambda ws, out: [
        member(f"workspaces/{ws}", tarfile.DIRTYPE),
        member(f"workspaces/{ws}/escape", tarfile.SYMTYPE, link=f"../../../{out.name}"),
        member(f"workspaces/{ws}/escape/pwned"),
    ]),
    "a symlink inside a mirror": ("symbolic link where only", lambda ws, out: [
        member(f"mirrors/{ws}.git/objects", tarfile.SYMTYPE, link=str(out))
    ]),
    "a symlink inside the checkout's .git": ("symbolic link where only", lambda ws, out: [
        member(f"workspaces/{ws}/.git/config", tarfile.SYMTYPE, link=str(out / "pwned"))
    ]),
    "a hard link to a file outside": ("hard link", lambda ws, out: [
        member(f"workspaces/{ws}/passwd", tarfile.LNKTYPE, link="/etc/passwd")
    ]),
    "a device file": ("a device or a pipe", lambda ws, out: [member(f"workspaces/{ws}/null", tarfile.CHRTYPE)]),
    "a mirror that is a file": ("must be a folder", lambda ws, out: [member(f"mirrors/{ws}.git")]),
    "the same member twice": ("appears twice", lambda ws, out: [member(f"workspaces/{ws}/a")] * 2),
}  # fmt: skip


@pytest.mark.parametrize("case", UNSAFE)
def test_an_unsafe_archive_is_refused_whole_and_the_task_starts_clean(case, origin, settings, store, tmp_path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    task = a_task(origin)
    machine = Machine(settings, tmp_path / "home", store)
    reason, members = UNSAFE[case]
    bad = members(task.workspace_id, outside)
    version = store_archive(store, task, [member(f"setup-cache/{task.workspace_id}", tarfile.DIRTYPE), *bad])
    state = machine.restore(task)
    [event] = [e for e in machine.events if e["step"] == "snapshot"]
    assert event["action"] == "refused" and reason in event["reason"]
    assert list(outside.iterdir()) == [] and not Path("/pwned").exists()
    assert not (machine.settings.setup_cache_dir / task.workspace_id).exists()  # nothing of it was kept
    assert state.version == version  # so the next save replaces the bad archive
    prepare_workspace(task, machine.settings, store, emit=machine.emit, run_setup=sh_setup)
    assert save_snapshot(state, task, machine.settings, store, machine.emit) == "saved"


@pytest.mark.parametrize("garbage", [b"not an archive at all", b"\x1f\x8b\x08\x00" + b"\x00" * 40])
def test_a_corrupt_archive_is_ignored_with_an_event_and_replaced_by_the_next_save(
    garbage, origin, settings, store, tmp_path
) -> None:
    task = a_task(origin)
    store.put_bytes(snapshot_key(task.workspace_id), garbage)
    machine = Machine(settings, tmp_path / "home", store)
    assert machine.work(task) == "saved"
    corrupt = next(e for e in machine.events if e["step"] == "snapshot")
    assert corrupt["action"] == "corrupt" and corrupt["reason"]
    assert machine.actions("mirror") == ["created"]
    with tarfile.open(store.uri(snapshot_key(task.workspace_id))) as tar:
        assert f"workspaces/{task.workspace_id}/README.md" in tar.getnames()


def test_a_truncated_archive_is_ignored(origin, settings, store, tmp_path) -> None:
    task = a_task(origin)
    Machine(settings, tmp_path / "first", store).work(task)
    whole = store.get_bytes(snapshot_key(task.workspace_id))
    store.put_bytes(snapshot_key(task.workspace_id), whole[: len(whole) // 2])
    machine = Machine(settings, tmp_path / "second", store)
    machine.restore(task)
    assert machine.actions("snapshot") == ["corrupt"]
    assert not machine.settings.workspaces_dir.exists() and not machine.settings.mirrors_dir.exists()


def test_an_upload_that_fails_is_an_event_not_an_error(origin, settings, tmp_path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    machine = Machine(settings, tmp_path / "home", LocalArtifactStore(blocked))
    assert machine.work(a_task(origin)) == "failed"
    assert machine.actions("snapshot") == ["none", "failed"]
    failure = machine.events[-1]
    assert failure["error"].startswith("upload: ") and "not-a-folder" in failure["error"]


# --- in the runner ------------------------------------------------------------------------------


def test_the_runner_restores_before_the_workspace_and_saves_after_the_result_even_on_failure(
    origin, settings, store, tmp_path
) -> None:
    def run(home: Path, script: list[dict[str, Any]]) -> Task:
        with ScriptedLLM(script) as llm:
            machine = Machine(settings, home, store)
            configured = machine.settings.model_copy(update={"gpt_oss_url": llm.url})
            return work_task(Task(request=TaskRequest(query="look", repo_url=str(origin))), configured, store)

    def steps(task: Task) -> list[tuple[str, str]]:
        lines = store.get_bytes(f"tasks/{task.id}/events.jsonl").decode().splitlines()
        events = [TaskEvent.model_validate_json(line) for line in lines]
        return [(e.data["step"], e.data["action"]) for e in events if e.kind == "workspace" and "action" in e.data]

    refusal = {"error": {"status": 400, "message": "no"}}
    failed = run(tmp_path / "first", [refusal])  # the model refuses: the task fails after the workspace
    assert failed.status is TaskStatus.FAILED
    assert steps(failed)[0] == ("snapshot", "none") and steps(failed)[-1] == ("snapshot", "saved")

    commit_files(origin, {"more.txt": "more\n"}, "more")
    done = run(tmp_path / "second", [look(), reply("nothing to do")])
    assert done.status is TaskStatus.SUCCEEDED, done.error
    assert [s for s in steps(done) if s[0] in ("snapshot", "mirror")] == [
        ("snapshot", "restored"), ("mirror", "fetched"), ("snapshot", "saved")
    ]  # fmt: skip
    head = git(origin, "rev-parse", "HEAD")
    mirror = tmp_path / "second" / "mirrors" / f"{done.workspace_id}.git"
    assert git(mirror, "rev-parse", "main") == head
