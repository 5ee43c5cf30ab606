"""Port fixtures (`task_store`, `artifact_store`, `job_runner`): fresh, empty, once per implementation.

Every test in tests/contract/ runs against each param. The gcp Firestore store plugs in here:
add "gcp" to `params` and a branch that builds it against the Firestore emulator (a fresh
collection prefix or an emulator reset per test), skipping when the emulator is unavailable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.local.artifacts import LocalArtifactStore
from agentfleet.local.jobs import LocalJobRunner
from agentfleet.local.store import SqliteTaskStore
from agentfleet.ports import ArtifactStore, JobRunner, TaskStore
from agentfleet.settings import Settings


@pytest.fixture(params=["local"])  # "gcp" joins here with the Firestore implementation.
def task_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    if request.param == "local":
        store = SqliteTaskStore(tmp_path / "tasks.db")
        yield store
        store.close()
    else:  # pragma: no cover - the branch each new backend fills in
        raise ValueError(f"no TaskStore backend {request.param!r}")


@pytest.fixture(params=["local"])  # "gcp" joins here with the Cloud Storage implementation.
def artifact_store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "local":
        return LocalArtifactStore(tmp_path / "artifacts")
    raise ValueError(f"no ArtifactStore backend {request.param!r}")  # pragma: no cover


@pytest.fixture(params=["local"])  # "gcp" joins here with the Cloud Run Jobs implementation (and its fake).
def job_runner(request: pytest.FixtureRequest, tmp_path: Path) -> JobRunner:
    """A runner whose executions run `sleep 30` (long enough to be seen and cancelled)."""
    if request.param == "local":
        settings = Settings(home=tmp_path / "home", _env_file=None)  # type: ignore[call-arg]
        return LocalJobRunner(settings, command=["sleep", "30"], grace_s=1.0)
    raise ValueError(f"no JobRunner backend {request.param!r}")  # pragma: no cover
