"""The `task_store` fixture: a fresh, empty TaskStore per test, once per implementation.

Every test in tests/contract/ runs against each param. The gcp Firestore store plugs in here:
add "gcp" to `params` and a branch that builds it against the Firestore emulator (a fresh
collection prefix or an emulator reset per test), skipping when the emulator is unavailable.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentfleet.local.store import SqliteTaskStore
from agentfleet.ports import TaskStore


@pytest.fixture(params=["local"])  # "gcp" joins here with the Firestore implementation.
def task_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TaskStore]:
    if request.param == "local":
        store = SqliteTaskStore(tmp_path / "tasks.db")
        yield store
        store.close()
    else:  # pragma: no cover - the branch each new backend fills in
        raise ValueError(f"no TaskStore backend {request.param!r}")
