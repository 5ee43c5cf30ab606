"""Shared fixtures: real git repositories in temp dirs, isolated settings, the cloud emulators."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agentfleet.settings import Settings
from agentfleet.testing.emulators import CloudEmulators, emulators_available, environment
from agentfleet.testing.repos import make_repo


@pytest.fixture
def repo_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(files: dict[str, str], name: str | None = None) -> Path:
        return make_repo(tmp_path / "repos" / (name or f"repo{next(counter)}"), files)

    return factory


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """AGENTFLEET_HOME for code that reads the environment (a function entry point), without a token."""
    monkeypatch.setenv("AGENTFLEET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AGENTFLEET_API_TOKEN", raising=False)
    return tmp_path / "home"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", _env_file=None)  # type: ignore[call-arg]


# --- Google Cloud emulators ---------------------------------------------------------------------
# Started once per test session, on demand (only when a test asks for `cloud`), on loopback ports,
# stopped at the end. Where they cannot run, the gcp tests skip and say why, except when
# AGENTFLEET_REQUIRE_EMULATORS=1 (CI sets it): then that is a failure.


@pytest.fixture(scope="session")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CloudEmulators]:
    why = emulators_available()
    if why is not None:
        if os.environ.get("AGENTFLEET_REQUIRE_EMULATORS") == "1":
            pytest.fail(f"AGENTFLEET_REQUIRE_EMULATORS=1 but {why}")
        pytest.skip(why)
    emulators = CloudEmulators(log_dir=tmp_path_factory.mktemp("emulator-logs")).start()
    hosts = {k: v for k, v in emulators.env().items() if k.endswith("_EMULATOR_HOST")}
    with environment(hosts):
        yield emulators
    emulators.stop()


@pytest.fixture
def gcp_settings(cloud: CloudEmulators, tmp_path: Path) -> Settings:
    """gcp settings against the emulators, with names of their own: a fresh tasks collection,
    topic and bucket per test (the bucket is created; the topic by whoever needs it)."""
    unique = uuid.uuid4().hex[:10]
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None,
        backend="gcp",
        home=tmp_path / "home",
        project_id=cloud.project,
        gcs_bucket=f"agentfleet-{unique}",
        tasks_collection=f"tasks-{unique}",
        pubsub_topic=f"tasks-{unique}",
        allow_local_repos=True,
    )
    from google.cloud import storage

    storage.Client(project=cloud.project).create_bucket(settings.gcs_bucket)
    return settings
