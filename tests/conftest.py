"""Shared fixtures: real git repositories in temp dirs and isolated settings."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from agentfleet.settings import Settings
from repos import make_repo


@pytest.fixture
def repo_factory(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1000))

    def factory(files: dict[str, str], name: str | None = None) -> Path:
        return make_repo(tmp_path / "repos" / (name or f"repo{next(counter)}"), files)

    return factory


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", _env_file=None)  # type: ignore[call-arg]
