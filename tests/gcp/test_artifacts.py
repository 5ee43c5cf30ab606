"""Workspace snapshots through Cloud Storage (the GCS emulator): the restore → save → restore
cycle between machines, and two agents saving the same workspace at once."""

from __future__ import annotations

import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from agentfleet.agent.snapshot import SnapshotState, restore_snapshot, save_snapshot
from agentfleet.agent.workspace import prepare_workspace
from agentfleet.gcp.artifacts import GcsArtifactStore
from agentfleet.names import snapshot_key
from agentfleet.settings import Settings
from agentfleet.tasks import Task, TaskRequest
from agentfleet.testing.repos import commit_files, git


class Machine:
    """One agent's container: an empty home of its own, its own client to the shared bucket."""

    def __init__(self, gcp_settings: Settings, home: Path) -> None:
        self.settings = gcp_settings.model_copy(update={"home": home})
        self.store = GcsArtifactStore.from_settings(self.settings)
        self.events: list[dict[str, Any]] = []

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        self.events.append(data)

    def restore(self, task: Task) -> SnapshotState:
        return restore_snapshot(task, self.settings, self.store, self.emit)

    def prepare(self, task: Task) -> None:
        prepare_workspace(task, self.settings, self.store, emit=self.emit, run_setup=None)

    def save(self, state: SnapshotState, task: Task) -> str:
        return save_snapshot(state, task, self.settings, self.store, self.emit)

    def actions(self, step: str) -> list[str]:
        return [e["action"] for e in self.events if e["step"] == step]


@pytest.fixture
def origin(repo_factory) -> Path:
    return repo_factory({"README.md": "hello\n", ".gitignore": "who.txt\n"}, name="project")


def a_task(origin: Path) -> Task:
    return Task(request=TaskRequest(query="do it", repo_url=str(origin)))


def test_snapshots_go_round_through_the_bucket_from_machine_to_machine(origin, gcp_settings, tmp_path) -> None:
    assert gcp_settings.snapshots_enabled
    first = Machine(gcp_settings, tmp_path / "first")
    task = a_task(origin)
    state = first.restore(task)
    first.prepare(task)
    assert state.version is None and first.save(state, task) == "saved"

    head = commit_files(origin, {"new.txt": "new\n"}, "later work")
    second = Machine(gcp_settings, tmp_path / "second")
    state = second.restore(task)
    second.prepare(task)
    assert second.actions("snapshot") == ["restored"] and second.actions("mirror") == ["fetched"]
    assert second.actions("checkout") == ["reused"]
    assert second.save(state, task) == "saved"

    third = Machine(gcp_settings, tmp_path / "third")
    state = third.restore(task)
    mirror = third.settings.mirrors_dir / f"{task.workspace_id}.git"
    assert git(mirror, "rev-parse", "main") == head  # before any fetch: it came in the snapshot
    third.prepare(task)
    assert third.save(state, task) == "unchanged"
    assert third.actions("snapshot") == ["restored", "unchanged"]


def test_two_agents_saving_one_workspace_at_once_leave_exactly_one_whole_snapshot(
    origin, gcp_settings, tmp_path
) -> None:
    task = a_task(origin)
    seed = Machine(gcp_settings, tmp_path / "seed")
    state = seed.restore(task)
    seed.prepare(task)
    seed.save(state, task)
    commit_files(origin, {"new.txt": "new\n"}, "later work")  # so both have something new to save

    agents = {name: Machine(gcp_settings, tmp_path / name) for name in ("blue", "green")}
    states = {}
    for name, agent in agents.items():
        states[name] = agent.restore(task)
        agent.prepare(task)
        (agent.settings.workspaces_dir / task.workspace_id / "who.txt").write_text(name)
    assert states["blue"].version == states["green"].version is not None
    start = threading.Barrier(len(agents))

    def save(name: str) -> tuple[str, str]:
        start.wait()
        return name, agents[name].save(states[name], task)

    with ThreadPoolExecutor(len(agents)) as pool:
        outcomes = dict(pool.map(save, agents))
    assert sorted(outcomes.values()) == ["saved", "superseded"]
    [winner] = [name for name, outcome in outcomes.items() if outcome == "saved"]
    loser = next(name for name in agents if name != winner)
    assert agents[loser].events[-1]["reason"] == "another task saved this workspace first"

    archive = tmp_path / "stored.tar.gz"
    seed.store.get_file_version(snapshot_key(task.workspace_id), archive)
    with tarfile.open(archive) as tar:  # read to the end: every member and the gzip trailer check out
        contents = {m.name: tar.extractfile(m).read() for m in tar if m.isreg()}  # type: ignore[union-attr]
    assert contents[f"workspaces/{task.workspace_id}/who.txt"] == winner.encode()
    assert contents[f"workspaces/{task.workspace_id}/new.txt"] == b"new\n"

    reader = Machine(gcp_settings, tmp_path / "reader")
    reader.restore(task)
    assert (reader.settings.workspaces_dir / task.workspace_id / "who.txt").read_text() == winner


# --- the store itself, beyond the contract ------------------------------------------------------


def test_artifacts_live_under_the_prefix_in_the_bucket(gcp_settings, tmp_path) -> None:
    store = GcsArtifactStore.from_settings(gcp_settings.model_copy(update={"artifacts_prefix": "fleet/"}))
    store.put_bytes("tasks/t1/patch.diff", b"diff")
    assert store.uri("tasks/t1/patch.diff") == f"gs://{gcp_settings.gcs_bucket}/fleet/tasks/t1/patch.diff"
    assert store.bucket.get_blob("fleet/tasks/t1/patch.diff").download_as_bytes() == b"diff"
    assert GcsArtifactStore.from_settings(gcp_settings).exists("fleet/tasks/t1/patch.diff")


def test_a_missing_bucket_is_a_connection_error_that_names_the_setting(gcp_settings, tmp_path) -> None:
    store = GcsArtifactStore.from_settings(gcp_settings.model_copy(update={"gcs_bucket": "no-such-bucket-here"}))
    source = tmp_path / "in.bin"
    source.write_bytes(b"x")
    with pytest.raises(ConnectionError, match="GCS_BUCKET"):
        store.put_file_if("snapshots/w.tar.gz", source, version=None)
    with pytest.raises(KeyError):
        store.get_file_version("snapshots/w.tar.gz", tmp_path / "out")
