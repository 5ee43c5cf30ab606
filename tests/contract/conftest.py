"""Port fixtures (`task_store`, `artifact_store`, `job_runner`, `memory_store`): fresh, empty, once per
implementation; `other_writer`, a second store over `task_store`'s data.

Every test in tests/contract/ runs against each param: "local" in-process, "gcp" against the
emulators (the session's `cloud` fixture; fresh collection, bucket and fake Cloud Run per test).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.memory import SqliteMemoryStore
from agentfleet.local.store import SqliteTaskStore
from agentfleet.ports import ArtifactStore, JobRunner, MemoryStore, TaskStore
from agentfleet.settings import Settings

BACKENDS = ["local", "gcp"]


@pytest.fixture(params=BACKENDS)
def task_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    if request.param == "local":
        store = SqliteTaskStore(tmp_path / "tasks.db")
        yield store
        store.close()
    else:
        from agentfleet.gcp.store import FirestoreTaskStore

        yield FirestoreTaskStore.from_settings(request.getfixturevalue("gcp_settings"))


@pytest.fixture
def other_writer(task_store: TaskStore) -> Iterator[TaskStore]:
    """A second store object over `task_store`'s data, as another process opens it: what one
    writes, the other has not seen (no shared memory of the last seqs)."""
    if isinstance(task_store, SqliteTaskStore):
        other = SqliteTaskStore(task_store.path)
        yield other
        other.close()
        return
    from agentfleet.gcp.store import FirestoreTaskStore

    assert isinstance(task_store, FirestoreTaskStore)
    yield FirestoreTaskStore(task_store.client, task_store.tasks.id)


@pytest.fixture(params=BACKENDS)
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    from agentfleet.gcp.artifacts import GcsArtifactStore

    return GcsArtifactStore.from_settings(request.getfixturevalue("gcp_settings"))


@pytest.fixture(params=BACKENDS)
def job_runner(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[JobRunner]:
    """A runner whose executions run `sleep 30` (long enough to be seen and cancelled)."""
    if request.param == "local":
        settings = Settings(home=tmp_path / "home", _env_file=None)  # type: ignore[call-arg]
        yield LocalJobRunner(settings, command=["sleep", "30"], grace_s=1.0)
        return
    from agentfleet.gcp.jobs import CloudRunJobRunner
    from agentfleet.testing.fake_cloud_run import FakeCloudRun

    settings = request.getfixturevalue("gcp_settings")
    with FakeCloudRun(command=["sleep", "30"], grace_s=1.0) as fake:
        configured = settings.model_copy(update={"cloud_run_endpoint": fake.address, "job_image": "agent:test"})
        yield CloudRunJobRunner.from_settings(configured)


@pytest.fixture(params=BACKENDS)
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MemoryStore]:
    if request.param == "local":
        store = SqliteMemoryStore(tmp_path / "memory.db")
        yield store
        store.close()
        return
    from agentfleet.gcp.memory import FirestoreMemoryStore

    yield FirestoreMemoryStore.from_settings(request.getfixturevalue("gcp_settings"))
